#!/bin/sh
# Checkpoints end to end: train, save, evaluate (the same accuracy), open
# with numpy, resume (the same run), survive a crash mid-write, refuse
# truncated files.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
get() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" "$1" | tail -n 1; }

# Train, save, evaluate: the accuracy pipar-eval prints is the one
# training reported, on the same test samples.
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	data=fashion-mnist
else
	data=synthetic:2000
fi
"$BIN/pipar-train" --model vgg5 --data $data --epochs 1 --train-limit 2000 \
	--test-limit 1000 --seed 1 --threads 1 --checkpoint "$T/m.npz" >"$T/train.json"
check "pipar-train writes a checkpoint" "[ \$? -eq 0 ] && [ -s '$T/m.npz' ]"
"$BIN/pipar-eval" accuracy --model "$T/m.npz" --data $data:test --limit 1000 >"$T/eval.json"
check "pipar-eval accuracy reads it" "[ \$? -eq 0 ]"
a1=$(get "$T/train.json" test_accuracy)
a2=$(get "$T/eval.json" accuracy)
l1=$(get "$T/train.json" test_loss)
l2=$(get "$T/eval.json" loss)
check "the same test accuracy as training reported ($a1 = $a2)" "[ '$a1' = '$a2' ]"
check "and the same test loss ($l1 = $l2)" "[ '$l1' = '$l2' ]"
sed 's/.*"confusion":\[//' "$T/eval.json" | tr -c '0-9' ' ' | tr -s ' ' '\n' | grep . >"$T/conf.txt"
check "the confusion matrix is 10x10 and counts every sample" \
	"[ \$(wc -l <'$T/conf.txt') -eq 100 ] && [ \$(awk '{s+=\$1} END{print s}' '$T/conf.txt') -eq 1000 ]"

# numpy opens it, with every array in the manifest at its shape.
if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	/usr/bin/python3 - "$T/m.npz" >"$T/np.txt" 2>&1 <<'PY'
import json, sys, numpy
z = numpy.load(sys.argv[1])
man = json.loads(z["pipar.json"].decode())
bad = 0
for a in man["arrays"]:
    v = z[a["name"]]
    if list(v.shape) != a["shape"] or v.dtype != numpy.float32:
        bad += 1
    print(a["name"], v.shape, v.dtype)
print("bad", bad, "arrays", len(man["arrays"]))
PY
	check "numpy.load lists every array with its shape and float32" \
		"grep -q '^bad 0 arrays 38\$' '$T/np.txt' && grep -q '^u04.dense.weight (128, 3136) float32' '$T/np.txt'"
else
	nok "numpy is not installed (python3-numpy, listed in deps.debian)"
fi

# Resume: 1 epoch + 1 resumed epoch is the uninterrupted 2-epoch run, to
# the byte, with a dropout layer whose masks must continue where they were.
cat >"$T/drop.json" <<'JSON'
{"format": "pipar-model/1", "units": [
 {"layers": [{"type": "conv", "out": 6, "kernel": 3, "padding": 1}, {"type": "relu"},
             {"type": "maxpool", "kernel": 2}]},
 {"layers": [{"type": "flatten"}, {"type": "dense", "out": 32}, {"type": "relu"},
             {"type": "dropout", "rate": 0.3}]},
 {"layers": [{"type": "dense", "out": "classes"}]}]}
JSON
args="--model $T/drop.json --data synthetic:600:1x10x10:5 --batch 32 --seed 9 --threads 1"
"$BIN/pipar-train" $args --epochs 3 --checkpoint "$T/full.npz" >"$T/full.json"
"$BIN/pipar-train" $args --epochs 1 --checkpoint "$T/part.npz" >/dev/null
"$BIN/pipar-train" $args --epochs 3 --resume "$T/part.npz" --checkpoint "$T/resumed.npz" >"$T/resumed.json"
check "the resumed run prints epochs 2 and 3 only" "[ \$(wc -l <'$T/resumed.json') -eq 2 ] && grep -q '\"epoch\":2' '$T/resumed.json'"
check "with the numbers of the uninterrupted run" \
	"[ \"\$(sed -n '2,3p' '$T/full.json' | sed 's/\"seconds\":[0-9.]*//')\" = \"\$(sed 's/\"seconds\":[0-9.]*//' '$T/resumed.json')\" ]"
check "and the same final checkpoint, byte for byte" "cmp -s '$T/full.npz' '$T/resumed.npz'"
"$BIN/pipar-train" --model vgg5 --data synthetic:600:1x10x10:5 --resume "$T/part.npz" --epochs 2 \
	>/dev/null 2>"$T/e1"
check "resuming with another --model is refused" "[ \$? -eq 1 ] && grep -q 'is not the model in' '$T/e1'"

# A crash mid-write (the file size limit kills the process) leaves the old
# checkpoint intact.
cp "$T/full.npz" "$T/keep.npz"
# (An inner shell reaps it, so the signal is reported to /dev/null.)
sh -c '(ulimit -f 200; exec "$@")' sh "$BIN/pipar-train" --model vgg5 --data synthetic:200 \
	--epochs 1 --threads 1 --checkpoint "$T/full.npz" >/dev/null 2>&1
check "a process killed while writing leaves the old checkpoint intact" \
	"cmp -s '$T/full.npz' '$T/keep.npz' && '$BIN/pipar-eval' accuracy --model '$T/full.npz' --data synthetic:100:1x10x10:5 >/dev/null"

# Truncated anywhere: one line, exit 1, never a crash.
size=$(wc -c <"$T/m.npz")
bad=0
cuts=0
for frac in 0 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987 1597 2584 4181 6765 \
	10946 17711 28657 46368 75025 121393 196418 317811 514229 832040 999000 999999; do
	cut=$((size * frac / 1000000))
	head -c "$cut" "$T/m.npz" >"$T/cut.npz"
	"$BIN/pipar-eval" accuracy --model "$T/cut.npz" --data synthetic:10 >/dev/null 2>"$T/cut.err"
	st=$?
	cuts=$((cuts + 1))
	if [ $st -ne 1 ] || [ "$(wc -l <"$T/cut.err")" -ne 1 ] || ! grep -q cut.npz "$T/cut.err"; then
		bad=$((bad + 1))
		echo "# cut at $cut: exit $st: $(cat "$T/cut.err")"
	fi
done
check "a checkpoint cut at $cuts points is refused each time with one line naming it" "[ $bad -eq 0 ]"

# Mismatches are named.
"$BIN/pipar-eval" accuracy --model "$T/m.npz" --data synthetic:10:3x32x32 >/dev/null 2>"$T/e2"
check "data of another shape is refused naming both" "[ \$? -eq 1 ] && grep -q '3x32x32' '$T/e2' && grep -q '1x28x28' '$T/e2'"
"$BIN/pipar-eval" accuracy --data synthetic:10 >/dev/null 2>"$T/e3"
check "a missing --model is a usage error" "[ \$? -eq 2 ] && grep -q 'missing --model' '$T/e3'"
"$BIN/pipar-eval" frobnicate >/dev/null 2>"$T/e4"
check "an unknown sub-command is a usage error naming it" "[ \$? -eq 2 ] && grep -q \"unknown sub-command 'frobnicate'\" '$T/e4'"

tap_done
