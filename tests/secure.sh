#!/bin/sh
# Peers that prove who they are, and admission that no peer can stall: TLS
# with certificates and with a shared key; a wrong key, a certificate from
# another CA, an expired certificate, a plain client against a TLS server
# and a stranger without credentials are refused and learn nothing; plain
# TCP is refused off loopback; 200 idle connections and a slow-loris peer
# do not keep 4 honest devices from training; a newcomer during training
# is told the run has started.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
TBIN=${PIPAR_TESTBIN:-$(dirname "$0")/bin}
EX=$(dirname "$0")/../examples
T=${KEEP:-$(mktemp -d)}
mkdir -p "$T"
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
port=$((20000 + ($$ + 13000) % 20000))
data=synthetic:800

"$BIN/pipar-profile" --model vgg5 --data $data --batch 20 --repeat 1 --sizes 1,20 --role server \
	>"$T/s.json" 2>/dev/null
"$BIN/pipar-profile" --model vgg5 --data $data --batch 20 --repeat 1 --sizes 1,20 >"$T/d.json" 2>/dev/null
for k in 1 2 4; do
	"$BIN/pipar-plan" --device "$T/d.json" --server "$T/s.json" --devices $k --uplink 1gbit \
		--downlink 1gbit --batch 20 >"$T/p$k.json"
done
"$EX/make-certs" "$T/c" 2>/dev/null
DAYS=1 "$EX/make-certs" "$T/other" 2>/dev/null
check "make-certs writes a CA, the server's and a device's certificate and a shared key" \
	"[ -s '$T/c/ca.pem' ] && [ -s '$T/c/server.key' ] && [ -s '$T/c/device.pem' ] && [ \$(wc -c <'$T/c/key') -eq 65 ] && [ \$(stat -c %a '$T/c/server.key') = 600 ]"
# An expired certificate for the server, from the right CA.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/exp.key" \
	-out "$T/exp.csr" -subj "/CN=pipar server" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/exp.ext"
openssl x509 -req -in "$T/exp.csr" -CA "$T/c/ca.pem" -CAkey "$T/c/ca.key" -days -1 \
	-extfile "$T/exp.ext" -out "$T/exp.pem" 2>/dev/null

SCERT="--cert $T/c/server.pem --cert-key $T/c/server.key --ca $T/c/ca.pem"
DCERT="--cert $T/c/device.pem --cert-key $T/c/device.key --ca $T/c/ca.pem"

# serve NAME K SERVER-OPTIONS...: a server in the background, logging to NAME.log.
serve() {
	name=$1 k=$2
	shift 2
	port=$((port + 1))
	"$BIN/pipar-serve" --plan "$T/p$k.json" --listen 127.0.0.1:$port --epochs 1 --timeout 30 \
		--summary "$T/$name.sum" "$@" >/dev/null 2>"$T/$name.log" &
	spid=$!
	PIDS="$PIDS $spid"
}
# device NAME I K OPTIONS...: device I of K in the background.
device() {
	name=$1 i=$2 k=$3
	shift 3
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/$k --timeout 30 "$@" \
		2>"$T/$name.dev$i" &
	PIDS="$PIDS $!"
}

# Certificates both ways.
serve cert 2 $SCERT
device cert 0 2 $DCERT
device cert 1 2 $DCERT
wait $spid
check "certificates: the server and 2 devices finish over TLS (status $?)" \
	"grep -q 'epoch 1/1: .*, 2 device(s)' '$T/cert.log' && grep -q 'connections: TLS 1.3' '$T/cert.log'"
wait

# The shared key; then the wrong key, a certificate from another CA, no
# certificate, a plain device and a stranger, all against the same server.
serve psk 2 --key-file "$T/c/key"
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/2 --timeout 5 \
	--key-file "$T/other/key" 2>"$T/wrongkey.err"
wk=$?
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/2 --timeout 5 \
	2>"$T/plain.err"
pl=$?
"$TBIN/peer" 127.0.0.1:$port hello \
	'{"id":"stranger","samples":100,"norm":{"mean":[0.3],"std":[0.35]}}' >"$T/stranger.plain"
"$TBIN/peer" --key-file "$T/other/key" 127.0.0.1:$port hello \
	'{"id":"stranger","samples":100,"norm":{"mean":[0.3],"std":[0.35]}}' >"$T/stranger.tls"
device psk 0 2 --key-file "$T/c/key"
device psk 1 2 --key-file "$T/c/key"
wait $spid
check "shared key: the server and 2 devices finish over TLS (status $?)" \
	"grep -q 'epoch 1/1: .*, 2 device(s)' '$T/psk.log'"
wait
check "a device with the wrong key is refused (status $wk), saying so" \
	"[ $wk -eq 1 ] && grep -q 'TLS handshake failed' '$T/wrongkey.err' && grep -q 'refused a connection from 127.0.0.1:[0-9]*: TLS handshake failed' '$T/psk.log'"
check "a plain device against a TLS server is told to use TLS (status $pl)" \
	"[ $pl -eq 1 ] && grep -q 'the server refused: a plain connection; this server requires TLS' '$T/plain.err'"
check "a plain stranger learns nothing but that TLS is required" \
	"grep -q 'received ERROR: a plain connection; this server requires TLS' '$T/stranger.plain' && ! grep -q 'received PLAN\|received MODEL' '$T/stranger.plain'"
check "a stranger with another key learns nothing: its handshake fails" \
	"grep -q '^end: TLS handshake failed' '$T/stranger.tls' && ! grep -q '^received' '$T/stranger.tls'"
check "no stranger took a device's place" "! grep -q 'stranger' '$T/psk.log' && ! grep -q '\"fault\"' '$T/psk.sum'"

# Certificates that must not pass.
serve badcert 1 $SCERT
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/1 --timeout 5 \
	--ca "$T/other/ca.pem" 2>"$T/otherca.err"
oc=$?
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/1 --timeout 5 \
	--ca "$T/c/ca.pem" 2>"$T/nocert.err"
nc=$?
"$BIN/pipar-device" --connect localhost:$port --server-name pipar.example --data $data \
	--shard 0/1 --timeout 5 $DCERT 2>"$T/name.err"
nm=$?
kill $spid
wait $spid
check "a server certificate from another CA is refused by the device (status $oc)" \
	"[ $oc -eq 1 ] && grep -q \"TLS handshake failed: the server's certificate: \" '$T/otherca.err'"
check "a device without a certificate is refused by the server (status $nc)" \
	"[ $nc -eq 1 ] && grep -q 'TLS: tlsv13 alert certificate required' '$T/nocert.err' && grep -q 'refused a connection from .*: TLS handshake failed' '$T/badcert.log'"
check "a server certificate for another name is refused (status $nm)" \
	"[ $nm -eq 1 ] && grep -q \"the server's certificate: hostname mismatch\" '$T/name.err'"
serve expired 1 --cert "$T/exp.pem" --cert-key "$T/exp.key" --ca "$T/c/ca.pem"
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/1 --timeout 5 $DCERT \
	2>"$T/expired.err"
ex=$?
kill $spid
wait $spid
check "an expired server certificate is refused (status $ex)" \
	"[ $ex -eq 1 ] && grep -q \"the server's certificate: certificate has expired\" '$T/expired.err'"

# Plain TCP off loopback.
"$BIN/pipar-serve" --plan "$T/p2.json" --listen 0.0.0.0:0 --timeout 1 >/dev/null 2>"$T/open.err"
op=$?
check "plain TCP on a non-loopback address is refused as a usage error (status $op)" \
	"[ $op -eq 2 ] && grep -q \"plain TCP on '0.0.0.0' is refused\" '$T/open.err'"
"$BIN/pipar-serve" --plan "$T/p2.json" --listen 0.0.0.0:0 --timeout 1 --insecure >/dev/null \
	2>"$T/insecure.err"
in=$?
check "and accepted with --insecure (status $in: no device came)" \
	"[ $in -eq 1 ] && grep -q 'no device connected within 1 s' '$T/insecure.err'"
"$BIN/pipar-device" --connect 192.0.2.1:7000 --data $data --shard 0/1 --timeout 1 2>"$T/dopen.err"
dop=$?
check "a device refuses plain TCP to a non-loopback address (status $dop)" \
	"[ $dop -eq 2 ] && grep -q \"plain TCP to '192.0.2.1' is refused\" '$T/dopen.err'"
"$BIN/pipar-serve" --plan "$T/p2.json" --key-file "$T/c/server.pem" >/dev/null 2>"$T/badkey.err"
bk=$?
check "a key file that is no key is refused, named (status $bk)" \
	"[ $bk -eq 1 ] && grep -q \"server.pem': not a key\" '$T/badkey.err'"

# Admission under load: 200 idle connections and a slow-loris peer from the
# devices' own address, a HELLO deadline of 2 s.
serve stall 4 --key-file "$T/c/key" --hello-timeout 2 --epochs 1
"$TBIN/peer" 127.0.0.1:$port idle 200 25 >"$T/idle.out" &
PIDS="$PIDS $!"
"$TBIN/peer" 127.0.0.1:$port slow 25 >"$T/slow.out" &
PIDS="$PIDS $!"
sleep 1
for i in 0 1 2 3; do
	device stall $i 4 --key-file "$T/c/key" --slowdown 3
done
# A newcomer once the run has started.
for t in $(seq 1 100); do grep -q 'device 4 is' "$T/stall.log" && break; sleep 0.1; done
"$TBIN/peer" --key-file "$T/c/key" 127.0.0.1:$port hello \
	'{"id":"late","samples":100,"norm":{"mean":[0.3],"std":[0.35]}}' >"$T/late.out"
wait $spid
check "200 idle connections and a slow-loris peer do not keep 4 devices from training (status $?)" \
	"grep -q 'epoch 1/1: .*, 4 device(s)' '$T/stall.log' && grep -q 'opened 200 connections' '$T/idle.out'"
check "the idle and slow peers are cut off at the HELLO's deadline" \
	"grep -q 'refused a connection from 127.0.0.1:[0-9]*: TLS handshake failed: timed out after 2 s' '$T/stall.log'"
check "connections over the handshake caps are closed at once, said in the log" \
	"grep -q 'refused a connection: [0-9]* handshake(s) in progress' '$T/stall.log'"
check "a newcomer during training, with every device number taken, is told so" \
	"grep -q 'received ERROR: the run has its 4 device(s)' '$T/late.out'"
sed 's/^/# /' "$T/stall.log" | head -30
tap_done
