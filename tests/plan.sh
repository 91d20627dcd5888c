#!/bin/sh
# pipar-profile and pipar-plan end to end: a profile piped into the
# planner, a plan that validates, heterogeneous devices, the baselines,
# and bad profiles refused by name.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

prof="--model vgg5 --data synthetic:200 --batch 40 --sizes 1,4,10,20,40 --repeat 2 --threads 1"
"$BIN/pipar-profile" $prof --role server >"$T/srv.json"
check "pipar-profile writes a server profile" "[ \$? -eq 0 ] && grep -q '\"format\":[[:space:]]*\"pipar-profile/1\"' '$T/srv.json'"
check "with 5 units of forward and backward times at 5 sizes" \
	"[ \$(grep -c '\"median\"' '$T/srv.json') -eq 50 ]"
"$BIN/pipar-profile" $prof --slowdown 20 | "$BIN/pipar-plan" --device - --server "$T/srv.json" \
	--devices 4 --uplink 10mbit --downlink 25mbit --batch 40 --explain >"$T/plan.json" 2>"$T/explain.txt"
check "a profile piped into pipar-plan gives a plan" "[ \$? -eq 0 ] && grep -q '\"split_point\"' '$T/plan.json'"
"$BIN/pipar-plan" --check "$T/plan.json" >"$T/check.txt"
check "the plan validates against its format" "[ \$? -eq 0 ] && grep -q 'valid pipar-plan/1' '$T/check.txt'"
check "--explain ranks the candidates on stderr (ties share a rank, as 1-2)" "grep -Eq '^ *1( |-[0-9])' '$T/explain.txt' && grep -q 'searched in' '$T/explain.txt'"
for m in pipar sfl sl fl; do
	check "the plan predicts the $m baseline" "grep -q '\"$m\":' '$T/plan.json'"
done

# Heterogeneous devices: one profile each.
"$BIN/pipar-profile" $prof >"$T/fast.json"
"$BIN/pipar-profile" $prof --slowdown 30 --stages >"$T/slow.json"
check "with --stages a device profile times the device's stage through every unit" \
	"[ \$(grep -c '\"stage_forward\"' '$T/slow.json') -eq 5 ] && [ \$(grep -c '\"stage_backward\"' '$T/slow.json') -eq 5 ]"
check "without --stages a profile has no stages" "! grep -q stage_ '$T/srv.json' && ! grep -q stage_ '$T/fast.json'"
"$BIN/pipar-profile" $prof --role server --stages >"$T/srvst.json"
check "with --stages a server profile times the server's job from every unit on" \
	"[ \$? -eq 0 ] && [ \$(grep -c '\"stage_forward\"' '$T/srvst.json') -eq 5 ] && [ \$(grep -c '\"stage_backward\"' '$T/srvst.json') -eq 5 ]"
"$BIN/pipar-plan" --device "$T/slow.json" --server "$T/srvst.json" --devices 2 --uplink 50mbit \
	--downlink 50mbit --batch 40 >"$T/st.json"
check "a plan is made from profiles with stages" "[ \$? -eq 0 ] && '$BIN/pipar-plan' --check '$T/st.json' >/dev/null"
"$BIN/pipar-plan" --device "$T/fast.json" --device "$T/slow.json" --server "$T/srv.json" \
	--devices 2 --uplink 50mbit --downlink 50mbit --batch 40 >"$T/het.json"
check "two different devices get a plan with an entry each" \
	"[ \$? -eq 0 ] && [ \$(grep -c '\"profile\":' '$T/het.json') -eq 2 ] && '$BIN/pipar-plan' --check '$T/het.json' >/dev/null"
"$BIN/pipar-plan" --device "$T/fast.json" --server "$T/srv.json" --devices 2 --uplink 50mbit \
	--downlink 50mbit --batch 40 --mode fl >"$T/fl.json"
check "--mode fl puts the whole model on the devices" \
	"grep -q '\"mode\":[[:space:]]*\"fl\"' '$T/fl.json' && grep -q '\"split_point\":[[:space:]]*5,' '$T/fl.json'"

# Refusals, each one line naming the file and field.
"$BIN/pipar-plan" --device "$T/srv.json" --server "$T/srv.json" --devices 1 --uplink 1mbit \
	--downlink 1mbit --batch 40 >/dev/null 2>"$T/e1"
check "a server profile given as a device is refused" "[ \$? -eq 1 ] && grep -q \"field 'role'\" '$T/e1'"
cat >"$T/other.json" <<'JSON'
{"format": "pipar-model/1", "units": [{"layers": [{"type": "flatten"}, {"type": "dense", "out": 16}]},
 {"layers": [{"type": "dense", "out": "classes"}]}]}
JSON
"$BIN/pipar-profile" --model "$T/other.json" --data synthetic:200 --batch 40 --repeat 1 >"$T/other-dev.json"
"$BIN/pipar-plan" --device "$T/other-dev.json" --server "$T/srv.json" --devices 1 --uplink 1mbit \
	--downlink 1mbit --batch 40 >/dev/null 2>"$T/e2"
check "profiles of different models are refused" "[ \$? -eq 1 ] && grep -q 'different models' '$T/e2'"
sed '0,/"median":[[:space:]]*[0-9.e-]*/s//"median": -1/' "$T/fast.json" >"$T/neg.json"
"$BIN/pipar-plan" --device "$T/neg.json" --server "$T/srv.json" --devices 1 --uplink 1mbit \
	--downlink 1mbit --batch 40 >/dev/null 2>"$T/e3"
check "a negative time is refused naming the field" "[ \$? -eq 1 ] && grep -q 'units\[0\].forward\[0\].median' '$T/e3'"
head -c 300 "$T/fast.json" >"$T/cut.json"
"$BIN/pipar-plan" --device "$T/cut.json" --server "$T/srv.json" --devices 1 --uplink 1mbit \
	--downlink 1mbit --batch 40 >/dev/null 2>"$T/e4"
check "a truncated profile is refused naming the file" "[ \$? -eq 1 ] && grep -q 'cut.json' '$T/e4' && [ \$(wc -l <'$T/e4') -eq 1 ]"
"$BIN/pipar-plan" --device "$T/fast.json" --server "$T/srv.json" --devices 1 --uplink fast \
	--downlink 1mbit --batch 40 >/dev/null 2>"$T/e5"
check "a rate without a unit is a usage error" "[ \$? -eq 2 ] && head -n 1 '$T/e5' | grep -q \"^pipar-plan: bad value 'fast' for --uplink: expected a rate\" && sed -n 2p '$T/e5' | grep -q '^usage: pipar-plan'"
"$BIN/pipar-plan" --device "$T/fast.json" --device "$T/fast.json" --server "$T/srv.json" --devices 3 \
	--uplink 1mbit --downlink 1mbit --batch 40 >/dev/null 2>"$T/e6"
check "two profiles for three devices is a usage error" "[ \$? -eq 2 ]"
"$BIN/pipar-plan" --device "$T/fast.json" --server "$T/srv.json" --devices 1 --uplink 1mbit \
	--downlink 1mbit --batch 40 --memory 1K >/dev/null 2>"$T/e7"
check "a memory limit nothing fits is reported" "[ \$? -eq 1 ] && grep -q 'fits --memory' '$T/e7'"
sed 's/"devices":[[:space:]]*4/"devices": 3/' "$T/plan.json" >"$T/badplan.json"
"$BIN/pipar-plan" --check "$T/badplan.json" >/dev/null 2>"$T/e8"
check "a plan whose device list does not match is refused" "[ \$? -eq 1 ] && grep -q \"field 'per_device'\" '$T/e8'"

# The default micro-batch floor: 5 samples (batch-norm's statistics).
check "by default no micro-batch of fewer than 5 samples is searched" \
	"grep -q '\"min_micro_batch\":[[:space:]]*5,' '$T/plan.json' && ! grep -q '\"parallel_batches\":[[:space:]]*\(9\|[1-9][0-9]\),' '$T/plan.json'"
"$BIN/pipar-plan" --device "$T/fast.json" --server "$T/srv.json" --devices 1 --uplink 50mbit \
	--downlink 50mbit --batch 40 --min-micro 1 >"$T/any.json"
check "--min-micro 1 searches them all" "grep -q '\"min_micro_batch\":[[:space:]]*1,' '$T/any.json'"

# A choice given instead of searched; a sweep is a shell loop.
plan() { "$BIN/pipar-plan" --device "$T/fast.json" --server "$T/srv.json" --devices 2 \
	--uplink 50mbit --downlink 50mbit --batch 40 "$@"; }
it() { sed -n 's/.*"iteration_seconds":[[:space:]]*\([0-9.]*\).*/\1/p' "$1" | head -n 1; }
plan >"$T/best.json"
P=$(sed -n 's/^[[:space:]]*"split_point":[[:space:]]*\([0-9]*\),/\1/p' "$T/best.json" | head -n 1)
N=$(sed -n 's/^[[:space:]]*"parallel_batches":[[:space:]]*\([0-9]*\),/\1/p' "$T/best.json" | head -n 1)
plan --split "$P" --parallel "$N" >"$T/given.json"
check "given the searched P $P and N $N, the prediction is the searched one" \
	"[ \$? -eq 0 ] && [ '$(it "$T/best.json")' = \"\$(it '$T/given.json')\" ] && grep -q '\"chosen_by\":[[:space:]]*\"given\"' '$T/given.json' && '$BIN/pipar-plan' --check '$T/given.json' >/dev/null"
ep() { sed -n 's/.*"epoch_seconds":[[:space:]]*\([0-9.]*\).*/\1/p' "$1" | head -n 1; }
worse=1
for sp in 1 2 3 4; do
	for sn in 1 2 4; do
		plan --split $sp --parallel $sn >"$T/s$sp-$sn.json" || worse=0
		awk "BEGIN{exit !($(ep "$T/s$sp-$sn.json") >= $(ep "$T/best.json") - 1e-6)}" || worse=0
	done
done
check "a sweep over P and N: no choice given is predicted faster than the searched best" "[ $worse -eq 1 ]"
check "and a worse P is predicted slower" "awk 'BEGIN{exit !($(ep "$T/s4-1.json") > $(ep "$T/best.json"))}'"
check "and P and N are as given" \
	"grep -q '\"split_point\":[[:space:]]*3,' '$T/s3-2.json' && grep -q '\"parallel_batches\":[[:space:]]*2,' '$T/s3-2.json'"
plan --split 2 >"$T/p2.json"
check "--split alone searches N" "[ \$? -eq 0 ] && grep -q '\"split_point\":[[:space:]]*2,' '$T/p2.json'"
plan --split 1,3 --parallel 2 >"$T/per.json"
check "--split with a value per device" \
	"[ \$? -eq 0 ] && [ \$(grep -c '\"split_point\":[[:space:]]*3,' '$T/per.json') -ge 1 ] && '$BIN/pipar-plan' --check '$T/per.json' >/dev/null"
refused() { what=$1 want=$2; shift 2; plan "$@" >"$T/out" 2>"$T/err"; rc=$?
	check "$what (exit 2, named, usage after)" \
		"[ $rc -eq 2 ] && [ ! -s '$T/out' ] && head -n 1 '$T/err' | grep -qF -- \"pipar-plan: $want\" && sed -n 2p '$T/err' | grep -q '^usage: pipar-plan'"; }
refused "--split beyond the model" "--split 5 for device 1: expected a split point in [1, 4] (the model has 5 units)" --split 5
refused "--split with the wrong number of values" "--split has 3 values for 2 device(s)" --split 1,2,3
refused "--parallel beyond the floor" "--parallel 9 for device 1: expected N in [1, 8] (batch 40, micro-batches of at least 5)" --parallel 9
refused "--parallel for sfl" "--parallel 2 for device 1: sfl runs one batch at a time" --mode sfl --parallel 2
refused "--split 0" "bad value '0' for --split: expected an integer in [1, 4096]" --split 0
refused "--mode x" "bad value 'x' for --mode: expected one of pipar, sfl, sl or fl" --mode x

# --explain: what P and N mean, devices as "device 1", the other modes.
check "--explain says what P and N mean and shows the other modes" \
	"grep -q '^P: units 1..P of the model' '$T/explain.txt' && grep -q '^N: the micro-batches' '$T/explain.txt' && grep -q 'device 1 idle' '$T/explain.txt' && grep -q '^  fl ' '$T/explain.txt' && grep -q '^  sfl ' '$T/explain.txt' && grep -q '^  sl ' '$T/explain.txt' && ! grep -q dev0 '$T/explain.txt'"

# --latency: recorded in seconds, checked, and it lengthens an iteration.
plan >"$T/lat0.json"
plan --latency 10 >"$T/lat.json"
check "--latency 10 is recorded as 0.01 s and the plan checks" \
	"grep -q '\"latency_seconds\":[[:space:]]*0.01' '$T/lat.json' && '$BIN/pipar-plan' --check '$T/lat.json' >/dev/null && ! grep -q latency_seconds '$T/lat0.json'"
it() { grep -m 1 '"iteration_seconds"' "$1" | sed 's/.*:[[:space:]]*//; s/,.*//'; }
check "a 10 ms delay lengthens the predicted iteration by at least 20 ms ($(it "$T/lat0.json") s, $(it "$T/lat.json") s)" \
	"awk 'BEGIN{exit !($(it "$T/lat.json") >= $(it "$T/lat0.json") + 0.02 - 1e-6)}'"
refused "--latency over a minute" "bad value '70000' for --latency" --latency 70000
"$BIN/pipar-plan" --check "$T/lat.json" --latency 0 >/dev/null 2>"$T/err"
check "--check with --latency, even 0, is a usage error" \
	"[ \$? -eq 2 ] && grep -q 'check takes no other options' '$T/err'"
for opt in "--top 5" "--mode pipar" "--min-micro 5"; do
	"$BIN/pipar-plan" --check "$T/lat.json" $opt >/dev/null 2>"$T/err"
	check "--check with $opt, the default's value, is a usage error" \
		"[ \$? -eq 2 ] && grep -q 'check takes no other options' '$T/err'"
done

# Output that cannot be written is reported.
if [ -w /dev/full ]; then
	"$BIN/pipar-plan" --check "$T/plan.json" >/dev/full 2>"$T/err"
	check "--check >/dev/full says why (exit 1)" \
		"[ \$? -eq 1 ] && grep -q '^pipar-plan: cannot write to standard output: No space left on device' '$T/err'"
	plan >/dev/full 2>"$T/err"
	check "a plan >/dev/full says why (exit 1)" \
		"[ \$? -eq 1 ] && grep -q '^pipar-plan: cannot write to standard output: No space left on device' '$T/err'"
fi
check "no number in a plan is written with an exponent" "! grep -q '[0-9]e[-+][0-9]' '$T/plan.json' '$T/het.json'"

tap_done
