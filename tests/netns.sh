#!/bin/sh
# examples/netns-run: a run of a server and two devices, each in a network
# namespace of its own, over veth links shaped by the kernel to 20 Mbit/s
# each way, writes the summary, the traces and the log that paper/run-one
# writes; its bytes went over the shaped links, the epoch lasting at least
# the time they take at that rate; and nothing it made is left when it
# ends, nor when it is stopped by SIGTERM in the middle of the run.  It
# needs root: when netns-run says it cannot run here (status 77), the test
# is skipped.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
RUN=$(dirname "$0")/../examples/netns-run
T=$(mktemp -d)
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
# The server listens in a namespace of its own, where any port is free;
# one is chosen as elsewhere all the same.
port=$((20000 + ($$ + 17000) % 20000))
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	data=fashion-mnist train=fashion-mnist@400 test=fashion-mnist:test@200
else
	data=synthetic:6000 train=synthetic:400 test=synthetic:400:test@200
fi

"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --repeat 1 --sizes 1,10,50 --role server \
	>"$T/s.json" 2>/dev/null
"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --repeat 1 --sizes 1,10,50 \
	>"$T/d.json" 2>/dev/null
"$BIN/pipar-plan" --device "$T/d.json" --server "$T/s.json" --devices 2 --uplink 20mbit \
	--downlink 20mbit --batch 50 >"$T/p.json"

# netns_run NAME UP DOWN: start netns-run in the background, its process id
# in $rpid and so its namespaces' prefix in $prefix.
netns_run() {
	port=$((port + 1))
	BIN="$BIN" PORT=$port "$RUN" "$T/$1" "$T/p.json" $train $test 1 $2 $3 1 2 2>"$T/$1.err" &
	rpid=$!
	PIDS="$PIDS $rpid"
	prefix=pipar$rpid-
}
namespaces() { ip netns list 2>/dev/null | grep -c "^$prefix"; }
# What is still running of a run whose outputs are $T/NAME.*.
# (The processes' command lines, read from /proc: a minimal system has no ps.)
processes() {
	n=0
	for c in /proc/[0-9]*/cmdline; do
		tr '\0' ' ' <"$c" 2>/dev/null | grep -q "$T/$1\." && n=$((n + 1))
	done
	echo $n
}

netns_run k 20mbit 20mbit
most=0
while kill -0 $rpid 2>/dev/null; do
	now=$(namespaces)
	[ "$now" -le $most ] || most=$now
	sleep 0.05
done
wait $rpid
st=$?
if [ $st -eq 77 ]; then
	ok "# SKIP netns-run cannot run here: $(head -n 1 "$T/k.err")"
	tap_done
fi
check "netns-run finishes (status $st)" "[ $st -eq 0 ] && [ -s '$T/k.json' ]" ||
	sed 's/^/# /' "$T/k.err" "$T/k.log"
check "while it ran it had three namespaces, the server's and one per device ($most seen)" \
	"[ $most -eq 3 ]"
check "the summary has one epoch of two devices" \
	"/usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); e = s[\"epochs\"]; sys.exit(not (s[\"format\"] == \"pipar-summary/1\" and s[\"devices\"] == 2 and len(e) == 1 and e[0][\"epoch\"] == 1 and e[0][\"devices\"] == 2))' '$T/k.json'"
check "the server's log and the three traces are written, as run-one writes them" \
	"grep -q 'listening on 0.0.0.0:$port' '$T/k.log' && [ -s '$T/k.server.trace' ] && [ -s '$T/k.device0.trace' ] && [ -s '$T/k.device1.trace' ] && ! ls '$T'/k.device*.log >/dev/null 2>&1"
# Each device sent half the bytes up over its own 20 Mbit/s link, so the
# epoch took at least that long; unshaped, it takes a fraction of it.  A
# lower bound only, with room: the kernel's bucket lets a little through
# at once.
times=$(/usr/bin/python3 -c 'import json, sys; e = json.load(open(sys.argv[1]))["epochs"][0]; print(e["seconds"], e["bytes_up"] * 8 / 2 / 20e6)' "$T/k.json" 2>/dev/null)
set -- $times 0 0
check "the bytes went over the shaped links: the epoch took $1 s, the uplinks need $2 s" \
	"awk 'BEGIN {exit !($2 > 0.3 && $1 >= 0.8 * $2)}'"
check "when it has ended, no namespace of its is left ($(namespaces)), nor a process ($(processes k))" \
	"[ $(namespaces) -eq 0 ] && [ $(processes k) -eq 0 ]"

# SIGTERM in the middle of a run on slow links: it stops the programs and
# removes its namespaces.
netns_run term 2mbit 2mbit
for t in $(seq 1 300); do grep -q 'device 2 is' "$T/term.log" 2>/dev/null && break; sleep 0.05; done
during=$(namespaces)
sleep 0.5
kill -TERM $rpid
wait $rpid
st=$?
check "netns-run stopped by SIGTERM in the run exits 143 ($st), having had its three namespaces ($during)" \
	"[ $st -eq 143 ] && [ $during -eq 3 ]"
check "and leaves no namespace ($(namespaces)) nor process ($(processes term)) behind" \
	"[ $(namespaces) -eq 0 ] && [ $(processes term) -eq 0 ]"
tap_done
