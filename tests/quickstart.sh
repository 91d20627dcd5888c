#!/bin/sh
# examples/quickstart, the README's main job: it writes every output into
# the folder it is given (nothing at the top of the checkout), its model
# learns, and it fails, naming the device, when one device fails.  TAP.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${PIPAR_BIN:-$ROOT/bin}" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

before=$(ls "$ROOT")
PIPAR_BIN=$BIN "$ROOT/examples/quickstart" -o "$T/q" >"$T/out" 2>"$T/err"
check "the quickstart runs" "[ \$? -eq 0 ]"
[ $fail -eq 0 ] || sed 's/^/# /' "$T/err"
check "its outputs are in the folder it was given" \
	"for f in srv.json dev.json plan.json model.npz summary.json accuracy.json server.log device-0.log device-3.log; do [ -s '$T/q/'\$f ] || exit 1; done"
check "and nothing new at the top of the checkout" "[ \"\$(ls '$ROOT')\" = '$before' ]"
acc=$(sed -n 's/.*"accuracy":\([0-9.]*\).*/\1/p' "$T/q/accuracy.json")
check "the global model scores $acc on the test set, far above chance" \
	"awk 'BEGIN{exit !($acc > 0.6)}'"
check "it says where the outputs are and the accuracy" \
	"grep -q 'outputs in $T/q' '$T/err' && grep -q 'test accuracy $acc' '$T/err'"
check "no party is left running or waiting" "! ls '$T/q' | grep -q 'status\$\\|pid\$'"

# One device fails at once: the quickstart stops at once and says which.
mkdir "$T/bin"
for p in profile plan serve eval; do ln -s "$BIN/pipar-$p" "$T/bin/pipar-$p"; done
cat >"$T/bin/pipar-device" <<SH
#!/bin/sh
case "\$*" in *"--shard 2/4"*) echo "pipar-device: injected failure" >&2; exit 1 ;; esac
exec "$BIN/pipar-device" "\$@"
SH
chmod +x "$T/bin/pipar-device"
PIPAR_BIN=$T/bin "$ROOT/examples/quickstart" -o "$T/f" >/dev/null 2>"$T/err"
check "a failing device fails the quickstart" "[ \$? -eq 1 ]"
check "naming the device and its log" \
	"grep -q 'device 2 failed (exit 1)' '$T/err' && grep -q 'injected failure' '$T/err'"
check "and writes no model" "[ ! -e '$T/f/model.npz' ]"
examples/quickstart -o "$T/x" one 2>"$T/err"
check "a bad EPOCHS is a usage error" "[ \$? -eq 2 ] && grep -q \"bad EPOCHS 'one'\" '$T/err'"
tap_done
