#!/bin/sh
# examples/paper's quick target: all four modes really run (a server and
# four devices each, on real Fashion-MNIST), and its report holds a
# comparison of the four, an accuracy picture and two timelines that are
# well-formed SVG with one box per traced event.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${PIPAR_BIN:-$ROOT/bin}" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	nok "Fashion-MNIST is not installed (dataset-fashion-mnist, listed in deps.debian)"
	tap_done
fi
make -s -C "$ROOT/examples/paper" quick QUICK="$T/q" BIN="$BIN" >"$T/log" 2>&1
check "make quick finishes" "[ \$? -eq 0 ] && [ -s '$T/q/results.md' ]"
[ $fail -eq 0 ] || sed 's/^/# /' "$T/log"
R=$T/q/results.md
for m in fl sl sfl pipar; do
	check "the comparison has a row for $m" "grep -q '^| $m | [0-9]* | [0-9]* | 1 | [0-9.]* | ' '$R'"
	check "$m's summary has an epoch with a test accuracy" \
		"grep -q '\"test_accuracy\"' '$T/q/vgg5-50-50-$m.json'"
done
check "pipar's row has ratios against fl and sfl" \
	"grep '^| pipar |' '$R' | grep -q '[0-9.]*x | [0-9.]*x | [0-9.]*x | [0-9.]*x |\$'"
check "the reference runs of pipar-train are reported" "grep -q '^| 100 | 0\\.[0-9]* |' '$R' && grep -q '^| 400 | 0\\.[0-9]* |' '$R'"
for f in vgg5-50-50-accuracy timeline-sfl timeline-pipar; do
	check "$f.svg is well-formed XML" "xmllint --noout '$T/q/$f.svg'"
done
for m in sfl pipar; do
	boxes=$(xmllint --xpath 'count(//*[local-name()="rect" and @class="ev"])' "$T/q/timeline-$m.svg")
	# The events of iterations 0 and 1 in the traces, closing steps included.
	events=$(cat "$T/q/timeline-$m".*.trace | grep '"ph":"X"' | grep -c '"iteration":[01],')
	aggs=$(cat "$T/q/timeline-$m".*.trace | grep '"ph":"X"' | grep -v '"iteration":[01],' | grep -c '"name":"\(aggregate\|parameters up\|parameters down\)"')
	check "the $m timeline draws one box per event of its two iterations ($boxes boxes, $events events + $aggs aggregation)" \
		"[ '$boxes' -ge '$events' ] && [ '$boxes' -le \$(($events + $aggs)) ]"
done
check "the trace summaries were written" "grep -q '\"bottleneck\"' '$T/q/timeline-pipar.trace.json'"
tap_done
