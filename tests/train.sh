#!/bin/sh
# pipar-train end to end: a short real training run that must learn, and
# the refusals a user meets first.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
field() { sed -n "s/.*\"$2\":\([-0-9.e]*\).*/\1/p" "$1"; }

# Real Fashion-MNIST: 3000 images, 2 epochs.  Chance is 0.10.
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	"$BIN/pipar-train" --model vgg5 --data fashion-mnist --epochs 2 --batch 50 \
		--train-limit 3000 --test-limit 1000 --seed 3 --threads 1 \
		>"$T/fm.json" 2>"$T/fm.err"
	check "vgg5 on Fashion-MNIST runs" "[ \$? -eq 0 ] && [ \$(wc -l <'$T/fm.json') -eq 2 ]"
	l1=$(sed -n 1p "$T/fm.json" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
	l2=$(sed -n 2p "$T/fm.json" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
	acc=$(sed -n 2p "$T/fm.json" | sed 's/.*"test_accuracy":\([0-9.]*\).*/\1/')
	check "training loss falls ($l1 -> $l2)" "awk 'BEGIN{exit !($l2 < $l1)}'"
	check "test accuracy far above chance ($acc > 0.70)" "awk 'BEGIN{exit !($acc > 0.70)}'"
	check "stderr is quiet when it is not a terminal" "[ ! -s '$T/fm.err' ]"
else
	nok "Fashion-MNIST is not installed (dataset-fashion-mnist, listed in deps.debian)"
fi

# Synthetic data with a model from a JSON file; same seed, same numbers.
cat >"$T/tiny.json" <<'JSON'
{"format": "pipar-model/1", "name": "tiny", "units": [
 {"layers": [{"type": "conv", "out": 8, "kernel": 3, "padding": 1},
             {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2}]},
 {"layers": [{"type": "flatten"}, {"type": "dense", "out": "classes"}]}]}
JSON
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:1000:1x12x12:4 \
	--epochs 3 --batch 20 --seed 5 --threads 1 >"$T/s1.json"
check "a JSON model trains on synthetic data" "[ \$? -eq 0 ] && [ \$(wc -l <'$T/s1.json') -eq 3 ]"
sacc=$(sed -n 3p "$T/s1.json" | sed 's/.*"test_accuracy":\([0-9.]*\).*/\1/')
check "synthetic data is learnable ($sacc > 0.5, chance 0.25)" "awk 'BEGIN{exit !($sacc > 0.5)}'"
"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:1000:1x12x12:4 \
	--epochs 3 --batch 20 --seed 5 --threads 1 >"$T/s2.json"
check "the same seed reproduces the same losses and accuracies" \
	"[ \"\$(sed 's/\"seconds\":[0-9.]*//' '$T/s1.json')\" = \"\$(sed 's/\"seconds\":[0-9.]*//' '$T/s2.json')\" ]"

# Refusals: one line naming what is wrong, and the documented exit codes.
"$BIN/pipar-train" --data synthetic:10 >/dev/null 2>"$T/e1"
check "missing --model is a usage error (exit 2)" "[ \$? -eq 2 ] && grep -q 'missing --model' '$T/e1'"
"$BIN/pipar-train" --model vgg5 --data synthetic:10 --batch 0 >/dev/null 2>"$T/e2"
check "a bad --batch is a usage error naming the option" "[ \$? -eq 2 ] && grep -q -- '--batch' '$T/e2'"
"$BIN/pipar-train" --model vgg7 --data synthetic:10 >/dev/null 2>"$T/e3"
check "an unknown model is refused by name (exit 1)" "[ \$? -eq 1 ] && grep -q \"unknown model 'vgg7'\" '$T/e3' && [ \$(wc -l <'$T/e3') -eq 1 ]"
"$BIN/pipar-train" --model vgg5 --data mnist:/nonexistent >/dev/null 2>"$T/e4"
check "a missing data directory is refused naming the file" "[ \$? -eq 1 ] && grep -q '/nonexistent' '$T/e4'"
printf '{"format":"pipar-model/1","units":[{"layers":[{"type":"dense","out":"classes","size":3}]}]}' >"$T/bad.json"
"$BIN/pipar-train" --model "$T/bad.json" --data synthetic:10 >/dev/null 2>"$T/e5"
check "an unknown spec field is refused by name" "[ \$? -eq 1 ] && grep -q \"unknown field 'size'\" '$T/e5'"
"$BIN/pipar-train" --help >"$T/h" 2>&1
check "--help prints the usage to stdout and exits 0" "[ \$? -eq 0 ] && grep -q '^usage: pipar-train' '$T/h'"
if [ -w /dev/full ]; then
	"$BIN/pipar-train" --model "$T/tiny.json" --data synthetic:40:1x12x12:4 --epochs 1 \
		--batch 20 >/dev/full 2>"$T/e6"
	check "a full stdout is an error, not silent loss" "[ \$? -eq 1 ] && grep -q 'standard output' '$T/e6'"
fi

tap_done
