#!/bin/sh
# Hostile peers that pass the frame checks, against a real pipar-serve while
# three honest devices train: a micro-batch of NaN activations, a PARAMS_UP
# of finite 1e30 values, a HELLO claiming 10^12 samples, an id holding a
# line break.  The attacker is expelled by name, the honest devices finish,
# and the global model stays finite and far above chance.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
TBIN=${PIPAR_TESTBIN:-$(dirname "$0")/bin}
T=${KEEP:-$(mktemp -d)}
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
get() { sed -n "s/.*\"$2\":[[:space:]]*\([-0-9.e]*\).*/\1/p" "$1" | tail -n 1; }

if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	data=fashion-mnist
else
	data=synthetic:6000
fi
port=$((20000 + ($$ + 7000) % 20000))

"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --role server --repeat 1 \
	--sizes 1,10,50 >"$T/srv.json"
"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --repeat 1 --sizes 1,10,50 >"$T/dev.json"

# run MODE ATTACK [SERVER-OPTION...]: a server for 4 devices, the attacker
# and 3 honest ones; files named after ATTACK.
run() {
	mode=$1 attack=$2
	shift 2
	set -- $mode $attack "$@"
	port=$((port + 1))
	"$BIN/pipar-plan" --device "$T/dev.json" --server "$T/srv.json" --devices 4 --uplink 1gbit \
		--downlink 1gbit --batch 50 --mode $1 >"$T/$1.plan"
	"$BIN/pipar-serve" --plan "$T/$1.plan" --listen 127.0.0.1:$port --epochs 1 \
		--checkpoint "$T/$2.npz" --summary "$T/$2.sum" --timeout 60 ${3+"$3"} \
		>/dev/null 2>"$T/$2.log" &
	spid=$!
	PIDS="$PIDS $spid"
	# Peers the handshake refuses; they take no device's place.
	"$TBIN/peer" 127.0.0.1:$port hello \
		'{"id":"greedy","samples":1e12,"norm":{"mean":[0.3],"std":[0.35]}}' >"$T/$2.greedy"
	"$TBIN/peer" 127.0.0.1:$port hello \
		"{\"id\":\"x\\npipar-serve: epoch 9: {\\\"test_accuracy\\\":1}\",\"samples\":100,\"norm\":{\"mean\":[0.3],\"std\":[0.35]}}" \
		>"$T/$2.forger"
	"$TBIN/peer" 127.0.0.1:$port ${2%-*} attacker >"$T/$2.peer" &
	PIDS="$PIDS $!"
	for i in 0 1 2; do
		"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 \
			--train-limit 600 --timeout 60 2>"$T/$2.dev$i" &
		PIDS="$PIDS $!"
	done
	wait $spid
	status=$?
	wait
	check "$2: the server finishes the run (status $status)" "[ $status -eq 0 ]"
	check "$2: the 3 honest devices finish the epoch" \
		"grep -q 'epoch 1/1: .*, 3 device(s)' '$T/$2.log' && [ \$(grep -c '\"fault\"' '$T/$2.sum') -eq 1 ]"
	"$BIN/pipar-eval" accuracy --model "$T/$2.npz" --data $data:test --limit 2000 >"$T/$2.eval" 2>&1
	acc=$(get "$T/$2.eval" accuracy)
	check "$2: the global model is finite and scores ${acc:-nothing}, far above chance (0.10)" \
		"awk 'BEGIN{exit !(\"$acc\" + 0 > 0.4)}'"
	check "$2: a HELLO claiming 10^12 samples is refused, the peer told why" \
		"grep -q \"received ERROR: malformed HELLO: field 'samples': 1e+12 outside \\[1, \" '$T/$2.greedy' && ! grep -q 'received PLAN' '$T/$2.greedy'"
	check "$2: an id holding a line break is refused and forges no log line" \
		"grep -q \"received ERROR: malformed HELLO: field 'id': byte 2 (0x0a)\" '$T/$2.forger' && ! grep -q '^pipar-serve: epoch 9' '$T/$2.log'"
	for f in "$T/$2.log" "$T/$2.peer"; do sed 's/^/# /' "$f"; done
}

run pipar nan
check "nan: the attacker is expelled by name, for its own frame" \
	"grep -q 'device [1-4] (attacker): ACTIVATIONS frame: value 0 of sample 0 is not finite; continuing with 3' '$T/nan.log'"
check "nan: and told so" "grep -q 'received ERROR: ACTIVATIONS frame: value 0 of sample 0 is not finite' '$T/nan.peer'"
check "nan: no honest device is blamed" \
	"! grep -q 'device [1-4] (device-' '$T/nan.log' && ! grep -q 'not finite' '$T'/nan.dev*"

run fl huge
check "huge: the attacker's 1e30 update is refused at aggregation, by name" \
	"grep -q \"device [1-4] (attacker): refused at aggregation: its update's norm .* is over 100 times the devices' median\" '$T/huge.log'"
check "huge: and told so" "grep -q \"received ERROR: refused at aggregation\" '$T/huge.peer'"

# The robust rules: the screen expels the attacker whatever the rule, and
# what is combined is still a model that learns.
run fl huge-median --aggregate=median
check "huge-median: under the median rule the screen refuses the attacker too" \
	"grep -q \"device [1-4] (attacker): refused at aggregation\" '$T/huge-median.log'"
run pipar nan-trimmed --aggregate=trimmed:0.25
run sfl huge-clip --aggregate=clip:5

tap_done
