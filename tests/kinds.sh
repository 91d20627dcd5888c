#!/bin/sh
# Each program given a pipar file of another kind than it reads says so in
# one line naming the file as it was given and both kinds (the readers
# check "format" before any other field).  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
cd "$T" || exit 1

# Short documents of each kind, with fields only their own reader knows.
echo '{"format":"pipar-profile/1","role":"device","slowdown":1,"units":[]}' >dev.json
echo '{"format":"pipar-plan/1","mode":"pipar","split_point":1,"per_device":[]}' >plan.json
echo '{"format":"pipar-summary/1","mode":"pipar","epochs":[],"failed_devices":[]}' >run.json
echo '{"format":"pipar-trace/1","displayTimeUnit":"ms","traceEvents":[]}' >srv.trace
echo '{"role":"device","units":[]}' >bare.json

# refused "WHAT" "MESSAGE" command...: exit 1 and exactly one line,
# "PROGRAM: MESSAGE".
refused() {
	what=$1 want=$2
	shift 2
	"$@" </dev/null >/dev/null 2>e
	rc=$?
	printf '%s: %s\n' "$(basename "$1")" "$want" >want
	check "$what: $(head -n 1 e)" "[ $rc -eq 1 ] && diff -u want e"
}
rates="--devices 2 --uplink 10mbit --downlink 10mbit --batch 20"

refused "a profile given a plan" "'plan.json' is a pipar-plan/1 file, expected pipar-profile/1" \
	"$BIN/pipar-plan" --device plan.json --server dev.json $rates
refused "a profile given a summary" \
	"'run.json' is a pipar-summary/1 file, expected pipar-profile/1" \
	"$BIN/pipar-plan" --device run.json --server dev.json $rates
"$BIN/pipar-plan" --device - --server dev.json $rates <plan.json >/dev/null 2>e
rc=$?
echo "pipar-plan: '<stdin>' is a pipar-plan/1 file, expected pipar-profile/1" >want
check "a plan on standard input is named '<stdin>': $(cat e)" "[ $rc -eq 1 ] && diff -u want e"
refused "a JSON file with no format" "'bare.json' is not a pipar-profile/1 file (no \"format\" field)" \
	"$BIN/pipar-plan" --device bare.json --server dev.json $rates
refused "a plan given a profile" "'dev.json' is a pipar-profile/1 file, expected pipar-plan/1" \
	"$BIN/pipar-serve" --plan dev.json --listen 127.0.0.1:0
refused "a model spec given a plan" "'plan.json' is a pipar-plan/1 file, expected pipar-model/1" \
	"$BIN/pipar-train" --model plan.json --data synthetic:20
refused "a checkpoint given a plan" \
	"'plan.json' is a pipar-plan/1 file, expected a pipar checkpoint (.npz)" \
	"$BIN/pipar-eval" accuracy --model plan.json --data synthetic:20
refused "a checkpoint given text" "'bare.json' is not a pipar checkpoint (.npz)" \
	"$BIN/pipar-eval" accuracy --model bare.json --data synthetic:20
refused "a trace given a summary" "'run.json' is a pipar-summary/1 file, expected pipar-trace/1" \
	"$BIN/pipar-eval" trace srv.trace run.json
refused "a timeline given a summary" \
	"'run.json' is a pipar-summary/1 file, expected pipar-trace/1" \
	"$BIN/pipar-eval" timeline run.json --svg out.svg
refused "a summary given a trace" "'srv.trace' is a pipar-trace/1 file, expected pipar-summary/1" \
	"$BIN/pipar-eval" compare srv.trace
printf '{"format": "pipar-plan/1",\n' >cut.json
refused "text that is not JSON keeps its byte position" "'cut.json': not valid JSON (near byte 27)" \
	"$BIN/pipar-serve" --plan cut.json --listen 127.0.0.1:0

tap_done
