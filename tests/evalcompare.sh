#!/bin/sh
# pipar-eval compare and plot on hand-made run summaries whose answers are
# known, and on bad ones.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

# summary FILE MODE P N "SECONDS:ACC:SERVER_IDLE ..." [DEVICES]
summary() {
	f=$1 mode=$2 p=$3 nb=$4 eps=$5 k=${6:-4}
	{
		printf '{"format":"pipar-summary/1","mode":"%s","devices":%d,"split_point":%d,' "$mode" "$k" "$p"
		printf '"parallel_batches":%d,"epochs":[' "$nb"
		i=0
		for e in $eps; do
			s=${e%%:*} rest=${e#*:}
			a=${rest%%:*} idle=${rest#*:}
			[ $i -gt 0 ] && printf ','
			i=$((i + 1))
			printf '{"epoch":%d,"seconds":%s,"loss":0.5,"train_accuracy":0.8,"devices":%d,' $i "$s" "$k"
			printf '"bytes_up":1000,"bytes_down":2000,"device_resources":[{"device":1,'
			printf '"compute_busy_seconds":1,"compute_idle_seconds":2},{"device":2,'
			printf '"compute_busy_seconds":1,"compute_idle_seconds":4}],'
			printf '"server_busy_seconds":1,"server_idle_seconds":%s' "$idle"
			[ "$a" = - ] || printf ',"test_accuracy":%s,"test_loss":0.4' "$a"
			printf '}'
		done
		printf '],"failed_devices":[]}\n'
	} >"$f"
}
summary "$T/fl.json" fl 5 1 "10:0.80:9 10:0.86:9"
summary "$T/pipar.json" pipar 1 10 "4:0.84:1 4:0.87:1"
summary "$T/sfl.json" sfl 1 1 "6:0.86:5 6:0.87:5"
summary "$T/sl.json" sl 1 1 "20:0.85:19 20:0.88:19"

"$BIN/pipar-eval" compare "$T/fl.json" "$T/sl.json" "$T/sfl.json" "$T/pipar.json" --target 0.85 \
	--baseline fl --baseline sfl >"$T/table.md"
check "compare prints a Markdown table of four runs" \
	"[ \$? -eq 0 ] && [ \$(grep -c '^| [a-z]* | ' '$T/table.md') -eq 5 ] && grep -q '^|---|' '$T/table.md'"
check "the header names the target and both baselines" \
	"grep -q '| to 85% s |' '$T/table.md' && grep -q 'speedup vs fl' '$T/table.md' && grep -q 'speedup vs sfl' '$T/table.md'"
check "pipar: epoch 4 s, 85% at 8 s, final 0.87, server idle 2, device idle 3; 2.5x fl's speed and 9x less idle; 1.5x and 5x against sfl" \
	"grep -qx '| pipar | 1 | 10 | 2 | 4.00 | 8.0 | 0.8700 | 2.0 | 6.0 | 2.50x | 9.00x | 1.50x | 5.00x |' '$T/table.md'"
check "sl reaches exactly 85% at its first epoch (the target counts when met)" \
	"grep -q '^| sl | 1 | 1 | 2 | 20.00 | 20.0 | 0.8800 |' '$T/table.md'"
check "fl is its own baseline: 1.00x" \
	"grep -q '^| fl | 5 | 1 | 2 | 10.00 | 20.0 | 0.8600 | 18.0 | 6.0 | 1.00x | 1.00x | 0.60x | 0.56x |' '$T/table.md'"
"$BIN/pipar-eval" compare "$T/fl.json" "$T/pipar.json" --target 0.9 >"$T/nt.md"
check "a target no run reaches says so; no baseline, no ratio columns" \
	"[ \$(grep -c 'not reached' '$T/nt.md') -eq 2 ] && ! grep -q 'speedup' '$T/nt.md'"

"$BIN/pipar-eval" compare "$T/fl.json" "$T/pipar.json" --target 85% --baseline fl --json >"$T/c.json"
flat=$(tr -d ' \t\n' <"$T/c.json")
check "--json: the format, the target given as 85%, and the pipar run's numbers" \
	"echo '$flat' | grep -q '\"format\":\"pipar-compare/1\",\"target\":0.85,' && echo '$flat' | grep -q '\"mode\":\"pipar\",\"devices\":4,\"failed_devices\":0,\"split_point\":1,\"parallel_batches\":10,\"epochs\":2,\"seconds\":8,\"epoch_seconds\":4,\"time_to_target_seconds\":8,\"final_test_accuracy\":0.87,\"server_busy_seconds\":2,\"server_idle_seconds\":2,\"device_idle_seconds\":6,\"bytes_up\":2000,\"bytes_down\":4000'"
check "--json: speedup 2.5, idle reduction 9 and time-to-target speedup 2.5 against fl" \
	"echo '$flat' | grep -q '\"versus\":{\"fl\":{\"speedup\":2.5,\"server_idle_reduction\":9,\"time_to_target_speedup\":2.5}}'"
if command -v /usr/bin/python3 >/dev/null 2>&1; then
	check "--json output is JSON" "/usr/bin/python3 -m json.tool '$T/c.json' >/dev/null"
fi

# Two runs of one mode are labelled by file name; a mode then is ambiguous.
cp "$T/pipar.json" "$T/pipar-n4.json"
"$BIN/pipar-eval" compare "$T/pipar.json" "$T/pipar-n4.json" --baseline "$T/pipar.json" >"$T/dup.md"
check "two runs of one mode are labelled by file name, and a file names the baseline" \
	"[ \$? -eq 0 ] && grep -q '^| pipar-n4 |' '$T/dup.md' && grep -q 'speedup vs pipar |' '$T/dup.md'"
"$BIN/pipar-eval" compare "$T/pipar.json" "$T/pipar-n4.json" --baseline pipar >/dev/null 2>"$T/e"
check "a mode two runs share is refused as a baseline" "[ \$? -eq 1 ] && grep -q \"baseline 'pipar': 2 runs\" '$T/e'"
"$BIN/pipar-eval" compare "$T/pipar.json" --baseline fl >/dev/null 2>"$T/e"
check "a baseline no run matches is refused" "[ \$? -eq 1 ] && grep -q \"baseline 'fl': no run\" '$T/e'"

# Bad and mismatched input: one line naming the file.
refuse() { # WHAT FILE WANT [command...]
	what=$1 file=$2 want=$3
	shift 3
	"$@" >/dev/null 2>"$T/e"
	st=$?
	check "$what is refused naming the file" \
		"[ $st -eq 1 ] && [ \$(wc -l <'$T/e') -eq 1 ] && grep -q \"$file\" '$T/e' && grep -q \"$want\" '$T/e'"
}
summary "$T/k3.json" pipar 1 10 "4:0.84:1" 3
refuse "a run with another number of devices" k3.json "3 devices" "$BIN/pipar-eval" compare "$T/fl.json" "$T/k3.json"
refuse "a missing file" nothere.json "" "$BIN/pipar-eval" compare "$T/nothere.json"
printf '{"format":' >"$T/cut.json"
refuse "a truncated file" cut.json "not valid JSON (near byte 10)" "$BIN/pipar-eval" compare "$T/cut.json"
sed 's/pipar-summary/pipar-plan/' "$T/fl.json" >"$T/plan.json"
refuse "a file of another format" plan.json "is a pipar-plan/1 file, expected pipar-summary/1" "$BIN/pipar-eval" compare "$T/plan.json"
sed 's/"seconds":10,/"seconds":-1,/' "$T/fl.json" >"$T/neg.json"
refuse "a negative epoch time" neg.json "epoch 1: \\\"seconds\\\"" "$BIN/pipar-eval" compare "$T/neg.json"
sed 's/"mode":"fl"/"mode":"gossip"/' "$T/fl.json" >"$T/mode.json"
refuse "an unknown mode" mode.json "mode" "$BIN/pipar-eval" compare "$T/mode.json"
sed 's/"epoch":2,/"epoch":7,/' "$T/fl.json" >"$T/num.json"
refuse "epochs out of order" num.json "numbered 7" "$BIN/pipar-eval" compare "$T/num.json"
sed 's/"epochs":\[.*\],"failed/"epochs":[],"failed/' "$T/fl.json" >"$T/none.json"
refuse "a run without epochs" none.json "no epochs" "$BIN/pipar-eval" compare "$T/none.json"
sed 's/"test_accuracy":0.86/"test_accuracy":86/' "$T/fl.json" >"$T/pct.json"
refuse "an accuracy above 1" pct.json "above 1" "$BIN/pipar-eval" compare "$T/pct.json"
"$BIN/pipar-eval" compare "$T/fl.json" --target 1.5 >/dev/null 2>"$T/e"
check "a target outside (0, 1] is a usage error" "[ \$? -eq 2 ] && grep -q \"bad value '1.5' for --target\" '$T/e'"
"$BIN/pipar-eval" compare >/dev/null 2>"$T/e"
check "compare without summaries is a usage error" "[ \$? -eq 2 ]"

# plot: one curve and one point per epoch for each run, valid SVG.
"$BIN/pipar-eval" plot "$T/fl.json" "$T/sl.json" "$T/sfl.json" "$T/pipar.json" --target 0.85 \
	--title 'runs <&> "quoted"' --svg "$T/acc.svg"
check "plot writes an SVG" "[ \$? -eq 0 ] && [ -s '$T/acc.svg' ] && ! ls '$T' | grep -q 'tmp$'"
if command -v xmllint >/dev/null 2>&1; then
	check "the SVG is well-formed XML (the title's < & > \" escaped)" "xmllint --noout '$T/acc.svg'"
	curves=$(xmllint --xpath 'count(//*[local-name()="polyline"])' "$T/acc.svg")
	points=$(xmllint --xpath 'count(//*[local-name()="circle" and @class="pt"])' "$T/acc.svg")
	check "four curves and eight points (one per epoch), got $curves and $points" \
		"[ '$curves' = 4 ] && [ '$points' = 8 ]"
	labels=$(xmllint --xpath '//*[@class="run"]/@data-label' "$T/acc.svg" | tr -d ' \n')
	check "curves are labelled by mode in the order given: $labels" \
		"[ '$labels' = 'data-label=\"fl\"data-label=\"sl\"data-label=\"sfl\"data-label=\"pipar\"' ]"
else
	nok "xmllint is not installed (libxml2-utils, listed in deps.debian)"
fi
summary "$T/noacc.json" sfl 1 1 "6:-:5"
refuse "a run without test accuracy" noacc.json "no test accuracy" \
	"$BIN/pipar-eval" plot "$T/fl.json" "$T/noacc.json" --svg "$T/x.svg"
check "and nothing is written" "[ ! -e '$T/x.svg' ] && ! ls '$T' | grep -q 'tmp$'"
"$BIN/pipar-eval" plot "$T/fl.json" >/dev/null 2>"$T/e"
check "plot without --svg is a usage error" "[ \$? -eq 2 ] && grep -q -- '--svg' '$T/e'"
"$BIN/pipar-eval" plot "$T/fl.json" --svg - >"$T/out.svg"
check "--svg - writes to standard output" "[ \$? -eq 0 ] && grep -q '^<svg ' '$T/out.svg'"

tap_done
