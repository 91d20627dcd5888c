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
check "--explain ranks the candidates on stderr" "grep -q '^ *1 ' '$T/explain.txt' && grep -q 'searched in' '$T/explain.txt'"
for m in pipar sfl sl fl; do
	check "the plan predicts the $m baseline" "grep -q '\"$m\":' '$T/plan.json'"
done

# Heterogeneous devices: one profile each.
"$BIN/pipar-profile" $prof >"$T/fast.json"
"$BIN/pipar-profile" $prof --slowdown 30 >"$T/slow.json"
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
check "a rate without a unit is a usage error" "[ \$? -eq 2 ] && grep -q \"bad --uplink 'fast'\" '$T/e5'"
"$BIN/pipar-plan" --device "$T/fast.json" --device "$T/fast.json" --server "$T/srv.json" --devices 3 \
	--uplink 1mbit --downlink 1mbit --batch 40 >/dev/null 2>"$T/e6"
check "two profiles for three devices is a usage error" "[ \$? -eq 2 ]"
"$BIN/pipar-plan" --device "$T/fast.json" --server "$T/srv.json" --devices 1 --uplink 1mbit \
	--downlink 1mbit --batch 40 --memory 1K >/dev/null 2>"$T/e7"
check "a memory limit nothing fits is reported" "[ \$? -eq 1 ] && grep -q 'fits --memory' '$T/e7'"
sed 's/"devices":[[:space:]]*4/"devices": 3/' "$T/plan.json" >"$T/badplan.json"
"$BIN/pipar-plan" --check "$T/badplan.json" >/dev/null 2>"$T/e8"
check "a plan whose device list does not match is refused" "[ \$? -eq 1 ] && grep -q \"field 'per_device'\" '$T/e8'"

tap_done
