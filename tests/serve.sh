#!/bin/sh
# The runtime end to end on loopback with real processes: a server and 3
# devices, in each mode (pipar, sfl, sl, fl); a hostile peer; a device killed
# mid-run.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
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
# A free port for each run: the server is told 127.0.0.1:0 is not used;
# pick from the process id to keep parallel runs apart.
port=$((20000 + $$ % 20000))

"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --role server --repeat 1 \
	--sizes 1,10,50 >"$T/srv.json"
"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --repeat 1 --sizes 1,10,50 \
	--slowdown 5 >"$T/dev.json"

for mode in pipar sfl sl fl; do
	port=$((port + 1))
	"$BIN/pipar-plan" --device "$T/dev.json" --server "$T/srv.json" --devices 3 --uplink 1gbit \
		--downlink 1gbit --batch 50 --mode $mode >"$T/$mode.plan"
	"$BIN/pipar-serve" --plan "$T/$mode.plan" --listen 127.0.0.1:$port --epochs 1 \
		--data $data:test --checkpoint "$T/$mode.npz" --summary "$T/$mode.sum" \
		--trace "$T/$mode.srv.trace" --timeout 60 >"$T/$mode.rec" 2>"$T/$mode.log" &
	spid=$!
	PIDS="$PIDS $spid"
	for i in 0 1 2; do
		"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 \
			--train-limit 600 --timeout 60 --trace "$T/$mode.dev$i.trace" 2>"$T/$mode.dev$i" &
		PIDS="$PIDS $!"
	done
	wait $spid
	check "$mode: a server and 3 devices finish an epoch" "[ \$? -eq 0 ] && grep -q '\"format\":[[:space:]]*\"pipar-summary/1\"' '$T/$mode.sum'"
	check "$mode: the summary has busy and idle seconds of the server and of each device" \
		"grep -q '\"server_idle_seconds\"' '$T/$mode.sum' && [ \$(grep -c '\"compute_idle_seconds\"' '$T/$mode.sum') -eq 3 ]"
	check "$mode: standard output has the epoch's record, one pipar-epoch/1 JSON line" \
		"[ \$(wc -l <'$T/$mode.rec') -eq 1 ] && /usr/bin/python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; sys.exit(not (r[0][\"format\"] == \"pipar-epoch/1\" and r[0][\"epoch\"] == 1))' '$T/$mode.rec'"
	"$BIN/pipar-eval" accuracy --model "$T/$mode.npz" --data $data:test --limit 2000 >"$T/$mode.eval"
	acc=$(get "$T/$mode.eval" accuracy)
	check "$mode: the global checkpoint scores $acc, far above chance (0.10)" \
		"awk 'BEGIN{exit !($acc > 0.4)}'"
	if [ $mode = pipar ]; then
		# 600 samples in mini-batches of 50 cut into N micro-batches.
		N=$(grep -o '"parallel_batches":[[:space:]]*[0-9]*' "$T/pipar.plan" | head -n 1 | grep -o '[0-9]*$')
		check "pipar: the server trace has one stage per micro-batch of every device ($((3 * 12 * N)))" \
			"[ \$(grep -c '\"name\":\"server\",\"cat\"' '$T/pipar.srv.trace') -eq $((3 * 12 * N)) ]"
		check "pipar: a device trace has its forward, upload, backward and step stages" \
			"[ \$(grep -c '\"name\":\"forward\"' '$T/pipar.dev0.trace') -eq $((12 * N)) ] && [ \$(grep -c '\"name\":\"upload\"' '$T/pipar.dev0.trace') -eq $((12 * N)) ] && [ \$(grep -c '\"name\":\"backward\"' '$T/pipar.dev0.trace') -eq $((12 * N)) ] && [ \$(grep -c '\"name\":\"step\"' '$T/pipar.dev0.trace') -eq 12 ]"
		if /usr/bin/python3 -c 1 2>/dev/null; then
			check "pipar: the traces are valid JSON" \
				"/usr/bin/python3 -c 'import json,sys; [json.load(open(f)) for f in sys.argv[1:]]' '$T/pipar.srv.trace' '$T/pipar.dev0.trace'"
		fi
	fi
	wait
done

# A hostile peer: garbage before the devices, then a device that sends a
# wrong shape mid-run.  The server names it, the honest devices finish.
port=$((port + 1))
"$BIN/pipar-serve" --plan "$T/pipar.plan" --listen 127.0.0.1:$port --epochs 1 \
	--summary "$T/h.sum" --timeout 60 >/dev/null 2>"$T/h.log" &
spid=$!
PIDS="$PIDS $spid"
sleep 0.3
bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET / HTTP/1.1\r\n\r\nxxxxxxxx' >&3 && sleep 0.3" 2>/dev/null
"$BIN/pipar-device" --connect 127.0.0.1:$port --data synthetic:10:3x8x8 --shard 0/1 --timeout 5 \
	>/dev/null 2>&1
for i in 0 1 2; do
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 --train-limit 300 \
		--timeout 60 2>"$T/h.dev$i" &
	PIDS="$PIDS $!"
done
wait $spid
check "garbage and a peer with other data are refused by name, and the honest devices train" \
	"[ \$? -eq 0 ] && grep -q 'refused a connection from [0-9.:]*: bad magic' '$T/h.log' && grep -q 'refused a connection from [0-9.:]*: malformed HELLO' '$T/h.log' && ! grep -q '\"fault\"' '$T/h.sum'"
wait

# A device killed mid-run: the server notices, leaves it out and finishes.
port=$((port + 1))
"$BIN/pipar-serve" --plan "$T/pipar.plan" --listen 127.0.0.1:$port --epochs 2 \
	--summary "$T/k.sum" --timeout 30 >/dev/null 2>"$T/k.log" &
spid=$!
PIDS="$PIDS $spid"
for i in 0 1; do
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 --train-limit 600 \
		--timeout 60 2>"$T/k.dev$i" &
	PIDS="$PIDS $!"
done
# (slowed down, so that it is surely still training when it is killed)
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 2/3 --train-limit 600 \
	--slowdown 50 --timeout 60 2>"$T/k.dev2" &
victim=$!
sleep 2
kill -9 $victim 2>/dev/null
wait $spid
check "a device killed mid-run is left out and the run completes" \
	"[ \$? -eq 0 ] && grep -q '\"failed_devices\"' '$T/k.sum' && grep -q 'continuing with 2 device' '$T/k.log' && [ \$(grep -c '\"epoch\":' '$T/k.sum') -eq 2 ]"
wait

# Devices with different split points (units 1, 1..2 and 1..3 on the
# devices): every unit is averaged over the device parts and replicas that
# hold it.
if /usr/bin/python3 -c 1 2>/dev/null; then
	/usr/bin/python3 - "$T/pipar.plan" "$T/het.plan" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
for k, d in enumerate(p["per_device"]):
    d["split_point"] = k + 1
p["split_point"] = 1
json.dump(p, open(sys.argv[2], "w"))
PY
	port=$((port + 1))
	"$BIN/pipar-serve" --plan "$T/het.plan" --listen 127.0.0.1:$port --epochs 1 \
		--data $data:test --checkpoint "$T/het.npz" --summary "$T/het.sum" --timeout 60 \
		>"$T/het.rec" 2>"$T/het.log" &
	spid=$!
	PIDS="$PIDS $spid"
	for i in 0 1 2; do
		"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 \
			--train-limit 600 --timeout 60 2>/dev/null &
		PIDS="$PIDS $!"
	done
	wait $spid
	check "devices with split points 1, 2 and 3 train together" \
		"[ \$? -eq 0 ] && grep -q 'epoch 1/1: .*, 3 device(s)' '$T/het.log' && grep -q '^{\"format\":\"pipar-epoch/1\",\"epoch\":1,.*\"devices\":3' '$T/het.rec'"
	"$BIN/pipar-eval" accuracy --model "$T/het.npz" --data $data:test --limit 2000 >"$T/het.eval"
	acc=$(get "$T/het.eval" accuracy)
	check "and their global model scores $acc, far above chance" "awk 'BEGIN{exit !($acc > 0.4)}'"
	wait
fi

# Aggregating within the epoch: every 4 of the 12 iterations, and at the
# end; shards must then be of one size.
port=$((port + 1))
"$BIN/pipar-serve" --plan "$T/pipar.plan" --listen 127.0.0.1:$port --epochs 1 \
	--aggregate-every 4 --data $data:test --checkpoint "$T/agg.npz" --summary "$T/agg.sum" \
	--timeout 60 >/dev/null 2>"$T/agg.log" &
spid=$!
PIDS="$PIDS $spid"
for i in 0 1 2; do
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 --train-limit 600 \
		--timeout 60 2>/dev/null &
	PIDS="$PIDS $!"
done
wait $spid
check "--aggregate-every 4 averages twice within the epoch of 12 iterations and once at its end" \
	"[ \$? -eq 0 ] && [ \$(grep -c 'aggregated 3 device(s) within epoch 1' '$T/agg.log') -eq 2 ] && grep -q 'epoch 1/1: ' '$T/agg.log'"
"$BIN/pipar-eval" accuracy --model "$T/agg.npz" --data $data:test --limit 2000 >"$T/agg.eval"
acc=$(get "$T/agg.eval" accuracy)
check "and its global model scores $acc, far above chance" "awk 'BEGIN{exit !($acc > 0.4)}'"
wait
port=$((port + 1))
"$BIN/pipar-serve" --plan "$T/pipar.plan" --listen 127.0.0.1:$port --epochs 1 \
	--aggregate-every 4 --summary /dev/null --timeout 3 >/dev/null 2>"$T/agg2.log" &
spid=$!
PIDS="$PIDS $spid"
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/3 --train-limit 600 \
	--timeout 60 2>/dev/null &
PIDS="$PIDS $!"
sleep 0.5
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 1/3 --train-limit 500 \
	--timeout 60 2>"$T/agg2.dev" &
PIDS="$PIDS $!"
wait $spid
check "a shard of another size is refused when aggregating within epochs" \
	"grep -q 'needs shards of equal size: 500 samples' '$T/agg2.log'"
wait

# Nobody waits forever: a device that never comes is left out after the
# timeout, and a server that no device reaches gives up.
port=$((port + 1))
"$BIN/pipar-serve" --plan "$T/pipar.plan" --listen 127.0.0.1:$port --epochs 1 \
	--summary "$T/t.sum" --timeout 3 >/dev/null 2>"$T/t.log" &
spid=$!
PIDS="$PIDS $spid"
for i in 0 1; do
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 --train-limit 200 \
		--timeout 60 2>/dev/null &
	PIDS="$PIDS $!"
done
wait $spid
check "a planned device that never connects is left out after --timeout" \
	"[ \$? -eq 0 ] && grep -q 'never connected' '$T/t.sum' && grep -q '2 of 3 device' '$T/t.log'"
wait
port=$((port + 1))
"$BIN/pipar-serve" --plan "$T/pipar.plan" --listen 127.0.0.1:$port --epochs 1 --timeout 1 \
	>/dev/null 2>"$T/t2.log"
check "a server no device reaches gives up with one line" \
	"[ \$? -eq 1 ] && grep -q 'no device connected within 1 s' '$T/t2.log'"

tap_done
