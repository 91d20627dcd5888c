#!/bin/sh
# pipar-eval trace on hand-made traces whose busy and idle times are known.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

# Server (pid 0): compute 0-1 s and 0.5-1.5 s (overlapping: 1.5 s busy)
# and 3-4 s: busy 2.5 s.  Device 1: compute 0-1.5 s (forward) and steps at
# 1.5-2, 3.5-4 and 6.5-7 s: busy 3 s; uplink 1-2 s.  The run spans 0 to
# 7 s.
cat >"$T/srv.trace" <<'JSON'
{"traceEvents":[
{"name":"process_name","ph":"M","pid":0,"args":{"name":"server"}},
{"name":"server","ph":"X","pid":0,"tid":1,"ts":0,"dur":1000000,"args":{}},
{"name":"server","ph":"X","pid":0,"tid":1,"ts":500000,"dur":1000000,"args":{}},
{"name":"server","ph":"X","pid":0,"tid":1,"ts":3000000,"dur":1000000,"args":{}}]}
JSON
cat >"$T/dev.trace" <<'JSON'
{"traceEvents":[
{"name":"process_name","ph":"M","pid":1,"args":{"name":"device 1 (d)"}},
{"name":"forward","ph":"X","pid":1,"tid":1,"ts":0,"dur":1500000,"args":{}},
{"name":"step","ph":"X","pid":1,"tid":1,"ts":1500000,"dur":500000,"args":{}},
{"name":"step","ph":"X","pid":1,"tid":1,"ts":3500000,"dur":500000,"args":{}},
{"name":"step","ph":"X","pid":1,"tid":1,"ts":6500000,"dur":500000,"args":{}},
{"name":"upload","ph":"X","pid":1,"tid":2,"ts":1000000,"dur":1000000,"args":{"bytes":125000}},
{"name":"download","ph":"X","pid":1,"tid":3,"ts":2000000,"dur":250000,"args":{"bytes":5000}},
{"name":"download","ph":"X","pid":1,"tid":3,"ts":4000000,"dur":250000,"args":{"bytes":2500}}]}
JSON
"$BIN/pipar-eval" trace "$T/srv.trace" "$T/dev.trace" >"$T/out.json"
check "pipar-eval trace reads a server and a device trace" "[ \$? -eq 0 ]"
flat=$(tr -d ' \t\n' <"$T/out.json")
check "the span is 7 s" "echo '$flat' | grep -q '\"span_seconds\":7,'"
check "the server's compute is busy 2.5 s (overlaps counted once) and idle 4.5 s" \
	"echo '$flat' | grep -q '\"party\":\"server\",\"pid\":0,\"resource\":\"compute\",\"busy_seconds\":2.5,\"idle_seconds\":4.5,'"
check "the device's compute is busy 3 s and its uplink 1 s" \
	"echo '$flat' | grep -q '\"resource\":\"compute\",\"busy_seconds\":3,\"idle_seconds\":4,' && echo '$flat' | grep -q '\"resource\":\"uplink\",\"busy_seconds\":1,\"idle_seconds\":6,'"
check "two iterations between steps: 2 s and 3 s (mean and median 2.5, p95 3)" \
	"echo '$flat' | grep -q '\"iterations\":{\"count\":2,\"mean_seconds\":2.5,\"median_seconds\":2.5,\"p95_seconds\":3}'"
check "the bottleneck is the device's compute, busy 3/7 of the span" \
	"echo '$flat' | grep -q '\"bottleneck\":{\"party\":\"device1(d)\",\"resource\":\"compute\",\"share\":0.428571}'"
check "bytes moved: 125000 up and 7500 down, also per lane" \
	"echo '$flat' | grep -q '\"bytes_moved\":{\"uplink\":125000,\"downlink\":7500}' && echo '$flat' | grep -q '\"resource\":\"downlink\",\"busy_seconds\":0.5,\"idle_seconds\":6.5,\"utilisation\":[0-9.]*,\"bytes\":7500'"
sed 's/"bytes":125000/"bytes":-4/' "$T/dev.trace" >"$T/neg.trace"
"$BIN/pipar-eval" trace "$T/neg.trace" >/dev/null 2>"$T/e0"
check "a negative byte count is refused naming the file" "[ \$? -eq 1 ] && grep -q 'neg.trace.*bytes' '$T/e0'"
printf '{"traceEvents": 3}' >"$T/bad.trace"
"$BIN/pipar-eval" trace "$T/bad.trace" >/dev/null 2>"$T/e1"
check "a file that is not a trace is refused naming it" "[ \$? -eq 1 ] && grep -q 'bad.trace' '$T/e1'"
"$BIN/pipar-eval" trace "$T/missing.trace" >/dev/null 2>"$T/e2"
check "a missing file is refused naming it" "[ \$? -eq 1 ] && grep -q 'missing.trace' '$T/e2'"
"$BIN/pipar-eval" trace "$T/srv.trace" "$T/dev.trace" "$T/dev.trace" >/dev/null 2>"$T/e3"
check "a party in two files (not one run) is refused naming both" \
	"[ \$? -eq 1 ] && [ \$(wc -l <'$T/e3') -eq 1 ] && grep -q \"party 1 is also in\" '$T/e3'"
tap_done
