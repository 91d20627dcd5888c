#!/bin/sh
# pipar-eval timeline: hand-made traces whose boxes, lanes, legend and axis
# are known; --iterations; every kind of bad input refused with one line;
# the traces of a real (tiny) run drawn box for event.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
# xpath FILE EXPR: the value of an XPath expression over an SVG file.
xpath() { xmllint --xpath "$2" "$1" 2>/dev/null; }
boxes() { xpath "$1" 'count(//*[local-name()="rect" and @class="ev"])'; }
# list FILE NODES ATTR: the string values of the nodes, each followed by |.
list() {
	i=1
	c=$(xpath "$1" "count($2)")
	while [ "$i" -le "${c:-0}" ]; do
		printf '%s|' "$(xpath "$1" "string(($2)[$i]${3:-})")"
		i=$((i + 1))
	done
}
keys() { list "$1" '//*[@class="key"]' /@data-stage; }

# The SVG must be checked as XML: xmllint (libxml2-utils) is in deps.debian, so
# its absence is a failure, not a reason to skip.
check "xmllint is installed" "command -v xmllint >/dev/null"

# Three iterations of 1 s.  Device 1 (pid 1): in iteration i (from b = i s)
# forward of micro-batches 0 and 1 at b+0 and b+0.1 s, their uploads at
# b+0.1 and b+0.2, downloads at b+0.3 and b+0.4, backwards at b+0.35 and
# b+0.45, the step at b+0.5 (9 events); the server (pid 0) works on both
# at b+0.2 and b+0.3 (2).  Device 2 (pid 2, no name, no downlink): one
# forward, upload, backward and step per iteration (4).  Outside the
# iterations (iteration -1): device 1's parameters up at 2.6 s, down at
# 2.8 s, control down at 2.9 s and one at 1.25 s (within iteration 1); the
# server's aggregate at 2.7 s, which records its epoch (1) as the
# iteration.  50 events in all, 16 of iteration 1 (with the control down
# at 1.25 s), 31 of iterations 0 and 1, 15 of iteration 2.
ev() { # name pid tid ts_us dur_us iteration micro [extra args]
	printf ',\n{"name":"%s","cat":"x","ph":"X","pid":%d,"tid":%d,"ts":%d,"dur":%d,"args":{"iteration":%d,"micro":%d%s}}' \
		"$1" "$2" "$3" "$4" "$5" "$6" "$7" "${8:-}"
}
{
	printf '{"traceEvents":[\n{"name":"process_name","ph":"M","pid":1,"args":{"name":"device 1 (a&b<c>)"}}'
	printf ',\n{"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"name":"compute"}}'
	for i in 0 1 2; do
		b=$((i * 1000000))
		ev forward 1 1 $b 100000 $i 0
		ev forward 1 1 $((b + 100000)) 100000 $i 1
		ev upload 1 2 $((b + 100000)) 100000 $i 0 ',"bytes":1000'
		ev upload 1 2 $((b + 200000)) 100000 $i 1 ',"bytes":1000'
		ev download 1 3 $((b + 300000)) 50000 $i 0 ',"bytes":500'
		ev download 1 3 $((b + 400000)) 50000 $i 1 ',"bytes":500'
		ev backward 1 1 $((b + 350000)) 50000 $i 0
		ev backward 1 1 $((b + 450000)) 50000 $i 1
		ev step 1 1 $((b + 500000)) 50000 $i -1
	done
	ev "parameters up" 1 2 2600000 50000 -1 -1 ',"bytes":4000'
	ev "parameters down" 1 3 2800000 50000 -1 -1 ',"bytes":4000'
	ev "control down" 1 3 2900000 1000 -1 -1 ',"bytes":24'
	ev "control down" 1 3 1250000 1000 -1 -1 ',"bytes":24'
	printf '\n]}\n'
} >"$T/dev1.trace"
{
	printf '{"traceEvents":[\n{"name":"process_name","ph":"M","pid":0,"args":{"name":"server"}}'
	for i in 0 1 2; do
		b=$((i * 1000000))
		ev server 0 1 $((b + 200000)) 100000 $i 0 ',"device":1'
		ev server 0 1 $((b + 300000)) 100000 $i 1 ',"device":1'
	done
	ev aggregate 0 1 2700000 50000 1 -1
	printf '\n]}\n'
} >"$T/srv.trace"
{
	printf '{"displayTimeUnit":"ms","traceEvents":[\n{"name":"thread_name","ph":"M","pid":2,"tid":2,"args":{"name":"uplink"}}'
	for i in 0 1 2; do
		b=$((i * 1000000))
		ev forward 2 1 $b 100000 $i 0
		ev upload 2 2 $((b + 100000)) 100000 $i 0
		ev backward 2 1 $((b + 350000)) 50000 $i 0
		ev step 2 1 $((b + 500000)) 50000 $i -1
	done
	printf '\n]}\n'
} >"$T/dev2.trace"
cat "$T/srv.trace" "$T/dev1.trace" "$T/dev2.trace" | grep -c '"ph":"X"' >"$T/nx"
check "the hand-made traces hold 50 complete events" "[ \$(cat '$T/nx') -eq 50 ]"

# The files in any order: lanes are the server's, then the devices' by pid.
"$BIN/pipar-eval" timeline "$T/dev2.trace" "$T/srv.trace" "$T/dev1.trace" --svg "$T/all.svg" \
	2>"$T/e"
check "pipar-eval timeline draws the traces of a server and two devices" \
	"[ \$? -eq 0 ] && [ ! -s '$T/e' ] && [ -s '$T/all.svg' ]"
check "the picture is well-formed XML, an svg element with width, height and viewBox" \
	"xmllint --noout '$T/all.svg' && [ \"\$(xpath '$T/all.svg' 'name(/*)')\" = svg ] && [ \"\$(xpath '$T/all.svg' 'namespace-uri(/*)')\" = http://www.w3.org/2000/svg ] && [ \"\$(xpath '$T/all.svg' 'string(/*/@width)')\" = 1200 ] && xpath '$T/all.svg' 'string(/*/@viewBox)' | grep -q '^0 0 1200 [0-9]'"
check "one box per event: 50" "[ \"\$(boxes '$T/all.svg')\" = 50 ]"
check "every box has a tooltip" \
	"[ \"\$(xpath '$T/all.svg' 'count(//*[@class=\"ev\"]/*[local-name()=\"title\"])')\" = 50 ]"
check "six lanes; device 2's downlink, which has no events, left out" \
	"[ \"\$(xpath '$T/all.svg' 'count(//*[@class=\"lane\"])')\" = 6 ]"
lanes=$(list "$T/all.svg" '//*[@class="lane-label"]')
check "lanes in order, named from process_name (escaped) or by pid: $lanes" \
	"[ '$lanes' = 'server compute|device 1 (a&b<c>) compute|device 1 (a&b<c>) uplink|device 1 (a&b<c>) downlink|device 2 compute|device 2 uplink|' ]"
check "boxes sit in their lanes: 7 in the server's, 9 in device 1's downlink" \
	"[ \"\$(xpath '$T/all.svg' 'count(//*[@class=\"ev\" and @y=//*[@class=\"lane\"][1]/*[@class=\"lane-bg\"]/@y])')\" = 7 ] && [ \"\$(xpath '$T/all.svg' 'count(//*[@class=\"ev\" and @y=//*[@class=\"lane\"][4]/*[@class=\"lane-bg\"]/@y])')\" = 9 ]"
k=$(keys "$T/all.svg")
check "the legend lists the 10 stages drawn, not train or control up: $k" \
	"[ '$k' = 'forward|backward|step|upload|download|server|aggregate|parameters up|parameters down|control down|' ]"
ticks=$(list "$T/all.svg" '//*[@class="tick"]')
check "the axis runs 0 to 2.901 s in ticks of 0.5 s: $ticks" \
	"[ '$ticks' = '0.0|0.5|1.0|1.5|2.0|2.5|' ]"
check "a tooltip gives stage, device, iteration, micro-batch, start, duration and bytes" \
	"grep -q '<title>upload, iteration 1, micro-batch 0, start 1.100000 s, duration 100.000 ms, 1000 bytes</title>' '$T/all.svg' && grep -q '<title>server for device 1, iteration 2, micro-batch 1, start 2.300000 s' '$T/all.svg'"
check "markup in names is escaped" "grep -q 'device 1 (a&amp;b&lt;c&gt;) compute' '$T/all.svg'"

# --iterations
"$BIN/pipar-eval" timeline "$T/srv.trace" "$T/dev1.trace" "$T/dev2.trace" --iterations 1:1 \
	--svg "$T/it1.svg"
check "--iterations 1:1 draws its 15 events and the control event within them: 16 boxes" \
	"[ \$? -eq 0 ] && xmllint --noout '$T/it1.svg' && [ \"\$(boxes '$T/it1.svg')\" = 16 ] && [ \"\$(xpath '$T/it1.svg' 'count(//*[@class=\"ev\" and @data-iteration=\"1\"])')\" = 15 ]"
check "but not the aggregate, whose iteration field holds the epoch it closes" \
	"! grep -q aggregate '$T/it1.svg' && grep -q '<title>aggregate closing epoch 1, iteration -1' '$T/all.svg'"
check "and its axis starts at the first drawn event (iteration 1's first forward at x = 230)" \
	"grep -q 'data-stage=\"forward\" data-iteration=\"1\" data-micro=\"0\" x=\"230.00\"' '$T/it1.svg' && [ \"\$(xpath '$T/it1.svg' 'string((//*[@class=\"tick\"])[1])')\" = 0.0 ]"
check "box widths are proportional to durations: 0.1 s of 0.55 s over 950 px is 172.73 px" \
	"[ \"\$(xpath '$T/it1.svg' 'count(//*[@class=\"ev\" and @data-stage=\"forward\" and @width=\"172.73\"])')\" = 3 ]"
k=$(keys "$T/it1.svg")
check "the legend of iteration 1 has only its 7 stages: $k" \
	"[ '$k' = 'forward|backward|step|upload|download|server|control down|' ]"
"$BIN/pipar-eval" timeline "$T/srv.trace" "$T/dev1.trace" "$T/dev2.trace" --iterations 0:1 \
	--svg "$T/it01.svg"
check "--iterations 0:1 draws 31 boxes" "[ \$? -eq 0 ] && [ \"\$(boxes '$T/it01.svg')\" = 31 ]"
"$BIN/pipar-eval" timeline "$T/srv.trace" "$T/dev1.trace" "$T/dev2.trace" --iterations 2:5 \
	--svg "$T/it25.svg"
check "--iterations 2:5 draws the 15 events of iteration 2, not those after it" \
	"[ \$? -eq 0 ] && [ \"\$(boxes '$T/it25.svg')\" = 15 ] && ! grep -q 'parameters up' '$T/it25.svg' && ! grep -q 'aggregate' '$T/it25.svg'"
"$BIN/pipar-eval" timeline "$T/srv.trace" "$T/dev1.trace" "$T/dev2.trace" --iterations 1:1 \
	--svg - >"$T/stdout.svg"
check "--svg - writes the same picture to standard output" \
	"[ \$? -eq 0 ] && cmp -s '$T/stdout.svg' '$T/it1.svg'"
check "no temporary files are left beside the pictures" "! ls '$T' | grep -q tmp"

# Bad input: exit 1, one line on standard error naming the file, no picture.
# refused NAME FILE PATTERN [ARGS...]: runs timeline on FILE and the others.
refused() {
	what=$1 file=$2 pat=$3
	shift 3
	rm -f "$T/bad.svg"
	"$BIN/pipar-eval" timeline "$T/srv.trace" "$file" "$@" --svg "$T/bad.svg" >/dev/null \
		2>"$T/e"
	rc=$?
	base=$(basename "$file")
	check "$what is refused (exit 1, one line naming '$base'): $(head -n 1 "$T/e")" \
		"[ $rc -eq 1 ] && [ \$(wc -l <'$T/e') -eq 1 ] && grep -q '^pipar-eval: .*$base.*$pat' '$T/e' && [ ! -e '$T/bad.svg' ]"
}
refused "a missing file" "$T/missing.trace" "No such file"
printf '{"traceEvents":[\n{"name":"x",\n' >"$T/trunc.trace"
refused "a file that is not JSON" "$T/trunc.trace" "not valid JSON (near byte"
printf '{"traceEvents": 3}\n' >"$T/noarray.trace"
refused "a file without a traceEvents array" "$T/noarray.trace" "traceEvents"
sed '4s/"ts":[0-9]*,//' "$T/dev1.trace" >"$T/nots.trace"
refused "an event without ts" "$T/nots.trace" "has no ts"
sed '4s/"tid":1,//' "$T/dev1.trace" >"$T/notid.trace"
refused "an event without tid" "$T/notid.trace" "has no tid"
sed '4s/"pid":1,//' "$T/dev1.trace" >"$T/nopid.trace"
refused "an event without pid" "$T/nopid.trace" "has no pid"
sed '4s/"ph":"X",//' "$T/dev1.trace" >"$T/noph.trace"
refused "an event without ph" "$T/noph.trace" "has no ph"
sed '4s/"name":"forward",//' "$T/dev1.trace" >"$T/noname.trace"
refused "an event without name" "$T/noname.trace" "has no name"
sed '4s/"dur":[0-9]*,//' "$T/dev1.trace" >"$T/nodur.trace"
refused "an event without dur" "$T/nodur.trace" "has no dur"
sed '4s/"dur":[0-9]*,/"dur":-5,/' "$T/dev1.trace" >"$T/negdur.trace"
refused "a negative dur" "$T/negdur.trace" "negative dur"
sed '4s/"ts":[0-9]*,/"ts":1e999,/' "$T/dev1.trace" >"$T/inf.trace"
refused "a ts that is not finite" "$T/inf.trace" "ts that is not a finite"
sed 's/"pid":2/"pid":1/' "$T/dev2.trace" >"$T/samepid.trace"
refused "a second file of the same party (another run)" "$T/samepid.trace" \
	"not the traces of one run" "$T/dev1.trace"
refused "iterations with no events" "$T/dev1.trace" "no events of iterations 7 to 9" \
	--iterations 7:9
printf 'garbage\n' >"$T/g.trace"
refused "bytes that are not JSON at all" "$T/g.trace" "not valid JSON (near byte 0)"
# More events than are drawn: one line suggesting --iterations.
# 200001 events of device 5, 1000 per iteration; with the server's 7.
awk 'BEGIN { printf "{\"traceEvents\":[";
	for (i = 0; i <= 200000; i++)
		printf "%s\n{\"name\":\"f\",\"ph\":\"X\",\"pid\":5,\"tid\":1,\"ts\":%d,\"dur\":1,\"args\":{\"iteration\":%d}}", i ? "," : "", i * 2, int(i / 1000);
	printf "\n]}\n" }' >"$T/huge.trace"
refused "200008 events to draw" "$T/huge.trace" "200008 events to draw.*--iterations"
"$BIN/pipar-eval" timeline "$T/huge.trace" --iterations 3:3 --svg "$T/huge.svg" 2>"$T/e"
check "and with --iterations 3:3 its 1000 are drawn" \
	"[ \$? -eq 0 ] && [ \"\$(boxes '$T/huge.svg')\" = 1000 ]"

# Usage errors: exit 2, the first line saying what is wrong.
usage() {
	"$BIN/pipar-eval" timeline "$@" >/dev/null 2>"$T/e"
	rc=$?
	check "usage error (exit 2): $(head -n 1 "$T/e")" "[ $rc -eq 2 ] && head -n 1 '$T/e' | grep -q '^pipar-eval: '"
}
for bad in 3 2:1 -1:2 a:b 1:2x 1: :2 " 1:2" 1:-2 99999999999:99999999999; do
	"$BIN/pipar-eval" timeline "$T/srv.trace" --iterations "$bad" --svg "$T/bad.svg" \
		>/dev/null 2>"$T/e"
	rc=$?
	check "--iterations '$bad' is refused by name, the usage following (exit 2)" \
		"[ $rc -eq 2 ] && head -n 1 '$T/e' | grep -q \"^pipar-eval: bad value '$bad' for --iterations: expected A:B\" && sed -n 2p '$T/e' | grep -q '^usage: pipar-eval timeline '"
done
usage "$T/srv.trace"
usage "$T/srv.trace" --svg "$T/x.svg" --frobnicate
usage "$T/srv.trace" --svg
usage --svg "$T/x.svg"
"$BIN/pipar-eval" timeline --help >"$T/help"
check "--help prints the usage to standard output" \
	"[ \$? -eq 0 ] && grep -q '^usage: pipar-eval timeline FILE ... --svg OUT.svg|- \[--iterations A:B\]' '$T/help'"

# A real run, tiny: a server and two devices on loopback, each tracing.
"$BIN/pipar-profile" --model vgg5 --data synthetic:200 --batch 20 --role server --repeat 1 \
	--sizes 1,10,20 >"$T/psrv.json" &&
"$BIN/pipar-profile" --model vgg5 --data synthetic:200 --batch 20 --repeat 1 \
	--sizes 1,10,20 >"$T/pdev.json" &&
"$BIN/pipar-plan" --device "$T/pdev.json" --server "$T/psrv.json" --devices 2 --uplink 1gbit \
	--downlink 1gbit --batch 20 --mode pipar >"$T/run.plan"
check "a plan for a tiny run" "[ \$? -eq 0 ] && [ -s '$T/run.plan' ]"
"$BIN/pipar-serve" --plan "$T/run.plan" --listen 127.0.0.1:0 --epochs 1 --summary "$T/run.sum" \
	--trace "$T/run.srv.trace" --timeout 20 --threads 1 >"$T/run.rec" 2>"$T/run.log" &
spid=$!
PIDS="$PIDS $spid"
port=
# The server may be slow to start on a loaded machine: wait while it runs.
for i in $(seq 600); do
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/run.log")
	[ -n "$port" ] && break
	kill -0 $spid 2>/dev/null || break
	sleep 0.1
done
for i in 0 1; do
	"$BIN/pipar-device" --connect 127.0.0.1:${port:-1} --data synthetic:200 --shard $i/2 \
		--timeout 20 --threads 1 --trace "$T/run.dev$i.trace" 2>"$T/run.dev$i.log" &
	PIDS="$PIDS $!"
done
wait $spid
rc=$?
wait    # the devices write their traces as they leave
check "the run finishes and leaves three traces" \
	"[ $rc -eq 0 ] && [ -s '$T/run.srv.trace' ] && [ -s '$T/run.dev0.trace' ] && [ -s '$T/run.dev1.trace' ]" ||
	sed 's/^/# /' "$T/run.log" "$T/run.dev0.log" "$T/run.dev1.log"
nx=$(cat "$T/run.srv.trace" "$T/run.dev0.trace" "$T/run.dev1.trace" | grep -c '"ph":"X"')
"$BIN/pipar-eval" timeline "$T/run.dev1.trace" "$T/run.srv.trace" "$T/run.dev0.trace" \
	--svg "$T/run.svg"
check "the run's timeline is well-formed with one box per event ($nx)" \
	"[ \$? -eq 0 ] && xmllint --noout '$T/run.svg' && [ \"\$(boxes '$T/run.svg')\" = $nx ]"
check "the run's timeline has the server's compute lane first and 3 lanes per device" \
	"[ \"\$(xpath '$T/run.svg' 'string((//*[@class=\"lane-label\"])[1])')\" = 'server compute' ] && [ \"\$(xpath '$T/run.svg' 'count(//*[@class=\"lane\"])')\" = 7 ]"
k=$(keys "$T/run.svg")
check "the run's legend has the pipar stages: $k" \
	"echo '$k' | grep -q '^forward|backward|step|upload|download|server|'"
# (the aggregate's iteration field holds its epoch: it is in no iteration)
nx1=$(cat "$T/run.srv.trace" "$T/run.dev0.trace" "$T/run.dev1.trace" | grep '"ph":"X"' | grep -v '"name":"aggregate"' | grep -c '"iteration":1,')
"$BIN/pipar-eval" timeline "$T/run.dev1.trace" "$T/run.srv.trace" "$T/run.dev0.trace" \
	--iterations 1:1 --svg "$T/run1.svg"
check "the run's iteration 1 alone: $nx1 boxes of iteration 1" \
	"[ \$? -eq 0 ] && [ \"\$(xpath '$T/run1.svg' 'count(//*[@class=\"ev\" and @data-iteration=\"1\"])')\" = $nx1 ] && [ \"\$(xpath '$T/run1.svg' 'count(//*[@class=\"ev\" and @data-iteration!=\"1\" and @data-iteration!=\"-1\"])')\" = 0 ]"

# What the run wrote is read back (its traces summarised, its summary
# compared), and none of the numbers written is noisy: at most 6 decimals
# (seconds to the microsecond), 9 in the profiles (to the nanosecond), and
# no exponent.
"$BIN/pipar-eval" trace "$T/run.srv.trace" "$T/run.dev0.trace" "$T/run.dev1.trace" >"$T/run.ts"
check "the run's traces are summarised, as a pipar-trace-summary/1 document" \
	"[ \$? -eq 0 ] && grep -q '\"format\":[[:space:]]*\"pipar-trace-summary/1\"' '$T/run.ts'"
"$BIN/pipar-eval" compare --json "$T/run.sum" >"$T/run.cmp"
check "the run's summary is read back" "[ \$? -eq 0 ] && grep -q 'pipar-compare/1' '$T/run.cmp'"
# noisy DECIMALS FILE...: the first few numbers with more decimals or an
# exponent (the files' own paths left out: a temporary directory's random
# name may read like one, "tmp.a3eEk").
noisy() {
	d=$1
	shift
	cat "$@" | sed "s|$T[^\"]*||g" | grep -Eho '[-0-9.eE+]*[0-9][-0-9.eE+]*' |
		grep -E "\\.[0-9]{$((d + 1))}|[0-9][eE]" | head -n 3 | tr '\n' ' '
}
check "the summary, trace summary and comparison hold no noisy number: $(noisy 6 "$T/run.sum" "$T/run.ts" "$T/run.cmp")" \
	"[ -z \"\$(noisy 6 '$T/run.sum' '$T/run.ts' '$T/run.cmp')\" ]"
check "nor do the profiles: $(noisy 9 "$T/psrv.json" "$T/pdev.json")" \
	"[ -z \"\$(noisy 9 '$T/psrv.json' '$T/pdev.json')\" ]"

tap_done
