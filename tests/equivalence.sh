#!/bin/sh
# The pipeline changes when work happens, never what is computed: with one
# device and a model without batch-norm, pipar with N = 4 and sfl end with
# the weights pipar-train reaches on the same data, order and seed.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	nok "numpy is not installed (python3-numpy, listed in deps.debian): it compares the weights"
	tap_done
fi
cat >"$T/m.json" <<'JSON'
{"format": "pipar-model/1", "name": "nobn", "units": [
 {"layers": [{"type": "conv", "out": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
             {"type": "maxpool", "kernel": 2}]},
 {"layers": [{"type": "conv", "out": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
             {"type": "maxpool", "kernel": 2}]},
 {"layers": [{"type": "flatten"}, {"type": "dense", "out": 32}, {"type": "relu"}]},
 {"layers": [{"type": "dense", "out": "classes"}]}]}
JSON
data=synthetic:400:1x12x12:5
common="--data $data --seed 4 --threads 1"
"$BIN/pipar-train" --model "$T/m.json" $common --epochs 2 --batch 40 --lr 0.05 \
	--momentum 0.9 --checkpoint "$T/central.npz" >/dev/null
"$BIN/pipar-profile" --model "$T/m.json" --data $data --batch 40 --repeat 1 --sizes 1,10,40 \
	--role server >"$T/srv.json"
"$BIN/pipar-profile" --model "$T/m.json" --data $data --batch 40 --repeat 1 --sizes 1,10,40 >"$T/dev.json"
port=$((20000 + $$ % 20000))
compare() {
	/usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys, numpy
a, b = numpy.load(sys.argv[1]), numpy.load(sys.argv[2])
names = [x["name"] for x in json.loads(a["pipar.json"].decode())["arrays"] if x["kind"] != "momentum"]
worst = max(float(numpy.max(numpy.abs(a[k] - b[k])) / (numpy.max(numpy.abs(a[k])) + 1e-12)) for k in names)
print("%.3e" % worst)
PY
}
for mode in pipar sfl pipar-agg; do
	port=$((port + 1))
	pm=${mode%-agg}
	"$BIN/pipar-plan" --device "$T/dev.json" --server "$T/srv.json" --devices 1 --uplink 1gbit \
		--downlink 1gbit --batch 40 --mode $pm >"$T/$mode.plan"
	# The planner chooses the split; N is set to 4 for pipar, as the check asks.
	if [ $pm = pipar ]; then
		/usr/bin/python3 - "$T/$mode.plan" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["parallel_batches"] = 4
for d in p["per_device"]:
    d["parallel_batches"] = 4
    d["micro_batches"] = [10, 10, 10, 10]
json.dump(p, open(sys.argv[1], "w"))
PY
	fi
	"$BIN/pipar-plan" --check "$T/$mode.plan" >/dev/null || nok "the $mode plan is valid"
	agg=epoch
	[ $mode = pipar-agg ] && agg=3
	"$BIN/pipar-serve" --plan "$T/$mode.plan" --listen 127.0.0.1:$port --epochs 2 --lr 0.05 \
		--momentum 0.9 --seed 4 --checkpoint "$T/$mode.npz" --summary /dev/null \
		--aggregate-every $agg >/dev/null 2>/dev/null &
	spid=$!
	"$BIN/pipar-device" --connect 127.0.0.1:$port $common --shard 0/1 2>/dev/null
	wait $spid
	d=$(compare "$T/central.npz" "$T/$mode.npz")
	check "$mode (aggregating every $agg, N = $(grep -o '"parallel_batches":[[:space:]]*[0-9]*' "$T/$mode.plan" | head -n 1 | grep -o '[0-9]*$')) ends with pipar-train's weights (largest relative difference $d)" \
		"awk 'BEGIN{exit !($d < 1e-4)}'"
done
tap_done
