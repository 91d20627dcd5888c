#!/bin/sh
# One convention for every program: -h as well as --help (usage on
# standard output, exit 0), every bad value named with the option, the
# value and what is expected, the usage after every usage error (exit 2),
# ports range-checked, '-' for standard input and output, outputs checked
# before any work, and a failed write to standard output reported (exit
# 1).  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

# usage_error WHAT WANT CMD...: exit 2, first line "PROG: WANT...", then
# the usage text.
usage_error() {
	what=$1 want=$2
	shift 2
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
	prog=$(basename "$1")
	check "$what (exit 2, message, then usage)" \
		"[ $rc -eq 2 ] && [ ! -s '$T/out' ] && head -n 1 '$T/err' | grep -qF -- \"$prog: $want\" && sed -n 2p '$T/err' | grep -q '^usage: $prog'" ||
		sed 's/^/# /' "$T/err"
}

for p in train profile plan serve device eval; do
	for h in -h --help; do
		"$BIN/pipar-$p" $h >"$T/out" 2>"$T/err"
		check "pipar-$p $h: usage on standard output, exit 0" \
			"[ \$? -eq 0 ] && head -n 1 '$T/out' | grep -q '^usage: pipar-$p ' && [ ! -s '$T/err' ]"
	done
	usage_error "pipar-$p: an unknown option" "unknown option '--frobnicate'" \
		"$BIN/pipar-$p" --frobnicate
done
for sc in accuracy trace timeline compare plot; do
	for h in -h --help; do
		"$BIN/pipar-eval" $sc $h >"$T/out" 2>"$T/err"
		check "pipar-eval $sc $h: its own usage on standard output, exit 0" \
			"[ \$? -eq 0 ] && [ \$(grep -c '^usage: pipar-eval ' '$T/out') -eq 1 ] && grep -q '^usage: pipar-eval $sc ' '$T/out' && [ ! -s '$T/err' ]"
	done
done
usage_error "pipar-eval: an unknown sub-command" "unknown sub-command 'frob'" "$BIN/pipar-eval" frob
usage_error "pipar-eval compare: an unknown option" "unknown option '--frob'" \
	"$BIN/pipar-eval" compare --frob x.json

# Bad values, one wording.
usage_error "pipar-serve --lr abc" "bad value 'abc' for --lr: expected a number in [0, 1000000]" \
	"$BIN/pipar-serve" --plan p.json --lr abc
usage_error "pipar-serve --epochs 0" "bad value '0' for --epochs: expected an integer in [1, 100000]" \
	"$BIN/pipar-serve" --plan p.json --epochs 0
usage_error "pipar-serve --timeout 0" "bad value '0' for --timeout: expected a number greater than 0" \
	"$BIN/pipar-serve" --plan p.json --timeout 0
usage_error "pipar-serve --seed -1" "bad value '-1' for --seed: expected an integer in [0, 18446744073709551615]" \
	"$BIN/pipar-serve" --plan p.json --seed -1
usage_error "pipar-serve --progress sometimes" "bad value 'sometimes' for --progress: expected one of auto, always or never" \
	"$BIN/pipar-serve" --plan p.json --progress sometimes
usage_error "pipar-device --uplink 50" "bad value '50' for --uplink: expected a rate such as 10mbit" \
	"$BIN/pipar-device" --connect 127.0.0.1:1 --data synthetic:10 --shard 0/1 --uplink 50
usage_error "pipar-device --shard 3/2" "bad value '3/2' for --shard: expected I/K" \
	"$BIN/pipar-device" --connect 127.0.0.1:1 --data synthetic:10 --shard 3/2
usage_error "pipar-device --slowdown 0.5" "bad value '0.5' for --slowdown: expected a number in [1, 1000000]" \
	"$BIN/pipar-device" --connect 127.0.0.1:1 --data synthetic:10 --shard 0/1 --slowdown 0.5
usage_error "pipar-train --batch x" "bad value 'x' for --batch: expected an integer in [1, 1048576]" \
	"$BIN/pipar-train" --model vgg5 --data synthetic:10 --batch x
usage_error "pipar-train --partition dirichlet:0" "bad value 'dirichlet:0' for --partition: expected iid or dirichlet:ALPHA" \
	"$BIN/pipar-train" --model vgg5 --data synthetic:10 --shard 0/2 --partition dirichlet:0
usage_error "pipar-profile --role x" "bad value 'x' for --role: expected one of device or server" \
	"$BIN/pipar-profile" --model vgg5 --data synthetic:10 --batch 10 --role x
usage_error "pipar-profile --sizes 5,2" "bad value '5,2' for --sizes: expected ascending integers" \
	"$BIN/pipar-profile" --model vgg5 --data synthetic:10 --batch 10 --sizes 5,2
usage_error "pipar-eval accuracy --limit 0" "bad value '0' for --limit: expected an integer in [1," \
	"$BIN/pipar-eval" accuracy --model m.npz --data synthetic:10 --limit 0
usage_error "pipar-eval compare --target 2" "bad value '2' for --target: expected an accuracy in (0, 1]" \
	"$BIN/pipar-eval" compare --target 2 s.json
usage_error "a missing value" "option '--plan' needs a value" "$BIN/pipar-serve" --plan
usage_error "a missing option" "missing --plan" "$BIN/pipar-serve"
usage_error "an operand where none is taken" "unexpected argument 'extra'" \
	"$BIN/pipar-train" --model vgg5 --data synthetic:10 extra

# Ports.
usage_error "--listen port 99999" "bad value '127.0.0.1:99999' for --listen: expected ADDR:PORT with PORT in [0, 65535]" \
	"$BIN/pipar-serve" --plan p.json --listen 127.0.0.1:99999
usage_error "--listen without a port" "bad value '127.0.0.1' for --listen" \
	"$BIN/pipar-serve" --plan p.json --listen 127.0.0.1
usage_error "--connect to port 0" "bad value '127.0.0.1:0' for --connect: expected HOST:PORT with PORT in [1, 65535]" \
	"$BIN/pipar-device" --connect 127.0.0.1:0 --data synthetic:10 --shard 0/1

# Standard output is given to one output at most.
usage_error "two outputs on standard output" "--checkpoint and --trace cannot both be '-'" \
	"$BIN/pipar-serve" --plan p.json --checkpoint - --trace -
usage_error "--checkpoint - with --checkpoint-every" "--checkpoint - writes one checkpoint, at the end" \
	"$BIN/pipar-train" --model vgg5 --data synthetic:10 --checkpoint - --checkpoint-every 1
usage_error "standard input read twice" "standard input ('-') can be read once only" \
	"$BIN/pipar-eval" compare - -

# A tiny model, read from standard input; the checkpoint written to
# standard output and read back from standard input.
cat >"$T/tiny.json" <<'JSON'
{"format": "pipar-model/1", "name": "tiny", "units": [
 {"layers": [{"type": "conv", "out": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
             {"type": "maxpool", "kernel": 2}]},
 {"layers": [{"type": "flatten"}, {"type": "dense", "out": 10}]}]}
JSON
"$BIN/pipar-train" --model - --data synthetic:200 --epochs 1 --batch 20 --threads 1 \
	--checkpoint - <"$T/tiny.json" 2>"$T/rec" >"$T/m.npz"
check "pipar-train --model - --checkpoint -: the spec from standard input, the model to standard output" \
	"[ \$? -eq 0 ] && [ -s '$T/m.npz' ] && [ ! -e ./- ] && grep -q '^{\"format\":\"pipar-train-epoch/1\",\"epoch\":1,' '$T/rec'"
"$BIN/pipar-eval" accuracy --model - --data synthetic:200:test <"$T/m.npz" >"$T/acc" 2>"$T/err"
check "pipar-eval accuracy --model - reads it back" \
	"[ \$? -eq 0 ] && grep -q '^{\"format\":\"pipar-accuracy/1\",' '$T/acc' && grep -q '\"samples\":200' '$T/acc'"
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:200 --epochs 1 --batch 20 --threads 1 \
	>"$T/ep" 2>/dev/null
check "pipar-train's epoch records carry their format" \
	"grep -q '^{\"format\":\"pipar-train-epoch/1\",\"epoch\":1,' '$T/ep'"

# Outputs are checked before any work.
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:200 --epochs 1 \
	--checkpoint "$T/no/such/dir/m.npz" >"$T/out" 2>"$T/err"
check "pipar-train: a checkpoint path that cannot be written fails at once, named (exit 1)" \
	"[ \$? -eq 1 ] && [ ! -s '$T/out' ] && grep -q \"^pipar-train: cannot write '$T/no/such/dir/m.npz': No such file or directory\" '$T/err'"
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:200 --epochs 1 --checkpoint "$T" \
	>"$T/out" 2>"$T/err"
check "pipar-train: a directory as the checkpoint fails at once" \
	"[ \$? -eq 1 ] && grep -q \"cannot write '$T': it is a directory\" '$T/err'"
for o in checkpoint trace summary records; do
	"$BIN/pipar-serve" --plan "$T/none.json" --$o "$T/no/$o" >"$T/out" 2>"$T/err"
	check "pipar-serve: --$o that cannot be written fails before the plan is read" \
		"[ \$? -eq 1 ] && grep -q \"^pipar-serve: cannot write '$T/no/$o': No such file or directory\" '$T/err'"
done
"$BIN/pipar-device" --connect 127.0.0.1:1 --data synthetic:10 --shard 0/1 \
	--trace "$T/no/t.json" >"$T/out" 2>"$T/err"
check "pipar-device: a --trace that cannot be written fails before connecting" \
	"[ \$? -eq 1 ] && grep -q \"^pipar-device: cannot write '$T/no/t.json'\" '$T/err'"
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:200 --epochs 1 \
	--checkpoint /dev/null >/dev/null 2>"$T/err"
check "a device as an output is written in place, not replaced" \
	"[ \$? -eq 0 ] && [ -c /dev/null ]"

# A failed write to standard output is reported.
if [ -w /dev/full ]; then
	"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:200 --epochs 1 >/dev/full 2>"$T/err"
	check "pipar-train >/dev/full says why (exit 1)" \
		"[ \$? -eq 1 ] && grep -q '^pipar-train: cannot write to standard output: No space left on device' '$T/err'"
	"$BIN/pipar-profile" --model "$T/tiny.json" --data synthetic:20 --batch 10 --repeat 1 \
		>/dev/full 2>"$T/err"
	check "pipar-profile >/dev/full says why (exit 1)" \
		"[ \$? -eq 1 ] && grep -q '^pipar-profile: cannot write to standard output: No space left on device' '$T/err'"
	"$BIN/pipar-eval" accuracy --model "$T/m.npz" --data synthetic:200:test >/dev/full 2>"$T/err"
	check "pipar-eval accuracy >/dev/full says why (exit 1)" \
		"[ \$? -eq 1 ] && grep -q '^pipar-eval: cannot write to standard output: No space left on device' '$T/err'"
	"$BIN/pipar-serve" -h >/dev/full 2>/dev/null
	check "pipar-serve -h >/dev/full exits 1" "[ \$? -eq 1 ]"
else
	nok "/dev/full is not writable here"
fi

# A whole tiny run: port 0, the records and the summary on standard
# output as JSON lines, the checkpoint read back.
"$BIN/pipar-profile" --model "$T/tiny.json" --data synthetic:400 --batch 20 --role server \
	--repeat 1 --sizes 5,10,20 >"$T/s.prof"
"$BIN/pipar-profile" --model "$T/tiny.json" --data synthetic:400 --batch 20 --repeat 1 \
	--sizes 5,10,20 >"$T/d.prof"
"$BIN/pipar-plan" --device "$T/d.prof" --server "$T/s.prof" --devices 2 --uplink 1gbit \
	--downlink 1gbit --batch 20 --mode sfl >"$T/plan.json"
"$BIN/pipar-serve" --plan - --listen 127.0.0.1:0 --epochs 2 --checkpoint "$T/g.npz" \
	--timeout 20 <"$T/plan.json" >"$T/serve.out" 2>"$T/serve.log" &
spid=$!
PIDS="$PIDS $spid"
port=
for i in $(seq 1 600); do
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$T/serve.log")
	[ -n "$port" ] && break
	kill -0 $spid 2>/dev/null || break
	sleep 0.1
done
check "port 0: the server names the port the kernel gave it ($port)" "[ -n '$port' ] && [ '$port' -gt 0 ]"
"$BIN/pipar-device" --connect 127.0.0.1:$port --data synthetic:400 --shard 0/2 \
	--timeout 20 2>"$T/dev0.log" &
PIDS="$PIDS $!"
"$BIN/pipar-device" --connect 127.0.0.1:$port --data synthetic:400 --shard 1/2 \
	--timeout 20 --progress always 2>"$T/dev1.log" &
PIDS="$PIDS $!"
wait $spid
check "the run finishes" "[ \$? -eq 0 ]"
check "standard output: two pipar-epoch/1 lines, then the pipar-summary/1 line" \
	"[ \$(wc -l <'$T/serve.out') -eq 3 ] && sed -n 1p '$T/serve.out' | grep -q '^{\"format\":\"pipar-epoch/1\",\"epoch\":1,' && sed -n 2p '$T/serve.out' | grep -q '^{\"format\":\"pipar-epoch/1\",\"epoch\":2,' && sed -n 3p '$T/serve.out' | grep -q '^{\"format\":\"pipar-summary/1\",'"
check "each line is JSON" \
	"/usr/bin/python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' '$T/serve.out'"
sed -n 3p "$T/serve.out" >"$T/sum.json"
if [ -w /dev/full ]; then
	"$BIN/pipar-eval" compare "$T/sum.json" >/dev/full 2>"$T/err"
	check "pipar-eval compare >/dev/full says why (exit 1)" \
		"[ \$? -eq 1 ] && grep -q 'No space left on device' '$T/err'"
fi
"$BIN/pipar-eval" compare - <"$T/sum.json" >"$T/cmp" 2>"$T/err"
check "pipar-eval compare reads the summary line from standard input" \
	"[ \$? -eq 0 ] && grep -q 'sfl' '$T/cmp'"
loss=$(sed -n 2p "$T/serve.out" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
loss=$(printf '%.4f' "$loss")
check "the log says each epoch in words, with the record's loss ($loss)" \
	"grep -q '^pipar-serve: epoch 2/2: loss $loss, 2 device(s), ' '$T/serve.log'"
check "no progress line when standard error is not a terminal" \
	"! grep -q 'mini-batch' '$T/serve.log' && ! grep -q 'mini-batch' '$T/dev0.log'"
wait
check "--progress always: epoch, mini-batch, loss and elapsed time, as whole lines" \
	"grep -q '^pipar-device: epoch [12]/2, mini-batch [0-9]*/10, loss [0-9.]*, 0:[0-9][0-9] elapsed' '$T/dev1.log'"
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:200 --epochs 2 --batch 20 --threads 1 \
	--progress always >/dev/null 2>"$T/err"
check "pipar-train --progress always says what it does: normalisation, training, testing" \
	"grep -q '^pipar-train: computing the input normalisation over 200 samples' '$T/err' && grep -q '^pipar-train: epoch 1/2, mini-batch 10/10, .*elapsed' '$T/err' && grep -q '^pipar-train: epoch 2/2: testing on 200 samples' '$T/err' && grep -q '^pipar-train: epoch 2/2: loss [0-9.]*, test accuracy [0-9.]*, 0:00 elapsed' '$T/err'"
# On a terminal (script gives the program one): one line redrawn in place.
script -qc "'$BIN/pipar-train' --model '$T/tiny.json' --data synthetic:200 --epochs 1 --batch 20 --threads 1 >/dev/null" /dev/null >"$T/tty" 2>&1
check "on a terminal the progress line is redrawn in place (carriage return, erase to the end)" \
	"grep -q \"\$(printf '\\r')pipar-train: epoch 1/1, mini-batch 10/10\" '$T/tty' && grep -q \"\$(printf '\\033')\\[K\" '$T/tty'"
tap_done
