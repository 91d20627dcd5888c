#!/bin/sh
# Runs that survive: device numbers come from the shards, so two runs of
# the same command are identical whatever the order the devices connect
# in; the summary is on disk after every epoch, so a SIGKILL keeps the
# finished ones; a server killed in an epoch and resumed from its
# checkpoint ends as the uninterrupted run, bit for bit; SIGTERM on the server keeps a loadable checkpoint and the
# finished epochs and tells the devices BYE; SIGTERM on a device takes only
# that device out; a device killed and started again, or one that starts
# late, joins at an epoch's end; --slowdown does not multiply time spent
# off the processor (waiting for it, or stopped); outputs that cannot be written are refused before
# training.  TAP output.
set -u
BIN=${PIPAR_BIN:-$(dirname "$0")/../bin}
T=${KEEP:-$(mktemp -d)}
mkdir -p "$T"
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"
port=$((20000 + ($$ + 17000) % 20000))
if [ -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
	data=fashion-mnist
else
	data=synthetic:6000
fi

"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --repeat 1 --sizes 1,10,50 --role server \
	>"$T/s.json" 2>/dev/null
"$BIN/pipar-profile" --model vgg5 --data $data --batch 50 --repeat 1 --sizes 1,10,50 \
	>"$T/d.json" 2>/dev/null
"$BIN/pipar-plan" --device "$T/d.json" --server "$T/s.json" --devices 3 --uplink 1gbit \
	--downlink 1gbit --batch 50 >"$T/p.json"

# serve NAME EPOCHS [OPTION...]
serve() {
	name=$1 e=$2
	shift 2
	port=$((port + 1))
	"$BIN/pipar-serve" --plan "$T/p.json" --listen 127.0.0.1:$port --epochs $e --timeout 60 \
		--checkpoint "$T/$name.npz" --summary "$T/$name.sum" "$@" >/dev/null 2>"$T/$name.log" &
	spid=$!
	PIDS="$PIDS $spid"
}
# device NAME I LIMIT [OPTION...]
device() {
	name=$1 i=$2 lim=$3
	shift 3
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard $i/3 --train-limit $lim \
		--timeout 60 "$@" 2>"$T/$name.dev$i" &
	dpid=$!
	PIDS="$PIDS $dpid"
}
losses() { grep -o '"loss":[[:space:]]*[-0-9.e]*' "$1" | tr -d ' '; }

# Two runs of one command, the devices connecting in opposite orders.
for run in a b; do
	serve same-$run 2
	if [ $run = a ]; then order="0 1 2"; else order="2 1 0"; fi
	for i in $order; do
		device same-$run $i 300
		sleep 0.3
	done
	wait $spid
	wait
done
check "two runs of one command, devices connecting in opposite orders, number the devices by shard" \
	"grep -q \"device 1 is 'device-0'\" '$T/same-a.log' && grep -q \"device 1 is 'device-0'\" '$T/same-b.log'"
check "and give the same losses ($(losses "$T/same-a.sum" | head -n 1))" \
	"[ -n \"\$(losses '$T/same-a.sum')\" ] && [ \"\$(losses '$T/same-a.sum')\" = \"\$(losses '$T/same-b.sum')\" ]"
check "and the same global model, array by array" \
	"/usr/bin/python3 -c 'import numpy as np, sys; a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); sys.exit(not (sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)))' '$T/same-a.npz' '$T/same-b.npz'"

# Two devices asking for one number: the second is refused, by name.
serve twice 1 --timeout 5
device twice 0 100
device twice 0 100 --id other
wait $spid
wait
check "a second device asking for a number already taken is refused, saying by whom" \
	"grep -q \"device number 0 is taken by 'device-0'\" '$T/twice.log' || grep -q \"device number 0 is taken by 'other'\" '$T/twice.log'"

# SIGKILL after the first of three epochs: the summary holds it.
serve kill 3
for i in 0 1 2; do device kill $i 300; done
for t in $(seq 1 300); do grep -q 'epoch 1/3' "$T/kill.log" && break; sleep 0.1; done
kill -9 $spid
wait 2>/dev/null
check "a server killed with SIGKILL after an epoch leaves a summary with it" \
	"/usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(not (len(s[\"epochs\"]) >= 1 and s[\"epochs\"][0][\"epoch\"] == 1))' '$T/kill.sum'"

# The run to compare with: four epochs, uninterrupted.
serve whole 4 --checkpoint-every 1
for i in 0 1 2; do device whole $i 300; done
wait $spid
wait

# --checkpoint-every 1, then SIGKILL in the third of four epochs: the
# checkpoint on disk is the global model of a finished epoch, and loads;
# resumed from it, with the devices (--reconnect) coming back on their
# own, the run ends as the uninterrupted one did, bit for bit.
serve every 4 --checkpoint-every 1
for i in 0 1 2; do device every $i 300 --slowdown 2 --reconnect; done
for t in $(seq 1 600); do grep -q 'epoch 2/4' "$T/every.log" && break; sleep 0.1; done
sleep 0.5
kill -9 $spid
wait $spid 2>/dev/null
cp "$T/every.npz" "$T/every-cut.npz"
"$BIN/pipar-serve" --resume "$T/every.npz" --listen 127.0.0.1:$port --timeout 60 \
	--checkpoint "$T/every.npz" --summary "$T/every.sum" >/dev/null 2>"$T/every-resumed.log" &
spid=$!
PIDS="$PIDS $spid"
wait $spid
st=$?
wait
check "--checkpoint-every 1 leaves, after a SIGKILL, the checkpoint of a finished epoch" \
	"/usr/bin/python3 -c 'import json, sys, zipfile; m = json.loads(zipfile.ZipFile(sys.argv[1]).read(\"pipar.json\")); sys.exit(not (2 <= m[\"epoch\"] <= 3 and m[\"run\"][\"format\"] == \"pipar-run/1\"))' '$T/every-cut.npz' && '$BIN/pipar-eval' accuracy --model '$T/every-cut.npz' --data $data:test --limit 200 >/dev/null"
check "--resume goes on from it (status $st), the devices coming back on their own" \
	"[ $st -eq 0 ] && grep -q 'resuming after epoch [23] of 4' '$T/every-resumed.log' && grep -q 'lost the server' '$T/every.dev0' && grep -q 'joins the run in epoch [34] of 4' '$T/every.dev2'"
same_arrays="/usr/bin/python3 -c 'import numpy as np, sys; a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); k = [f for f in a.files if f != \"pipar.json\"]; sys.exit(not (len(k) > 10 and sorted(a.files) == sorted(b.files) and all(np.array_equal(a[f], b[f]) for f in k)))'"
check "and ends with the uninterrupted run's global model and momenta, array by array" \
	"$same_arrays '$T/whole.npz' '$T/every.npz'"
check "and a summary of the four epochs with its losses ($(losses "$T/whole.sum" | tail -n 1))" \
	"[ \"\$(losses '$T/whole.sum' | wc -l)\" -ge 4 ] && [ \"\$(losses '$T/whole.sum')\" = \"\$(losses '$T/every.sum')\" ]"

# A finished run resumed for one epoch more, writing no checkpoint: its
# devices, started again, take their slots back by shard; another id on
# such a slot is refused.
port=$((port + 1))
"$BIN/pipar-serve" --resume "$T/whole.npz" --epochs 5 --listen 127.0.0.1:$port --timeout 60 \
	--summary "$T/more.sum" >/dev/null 2>"$T/more.log" &
spid=$!
PIDS="$PIDS $spid"
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/3 --train-limit 300 \
	--id imposter --timeout 20 2>"$T/more.imposter"
for i in 0 1 2; do device more $i 300; done
wait $spid
st=$?
wait
check "a device of another id is refused the slot of one that trained before" \
	"grep -q \"device number 0 was 'device-0' in the run resumed; 'imposter' cannot take it\" '$T/more.log' && grep -q 'the server refused' '$T/more.imposter'"
check "a finished run resumed with --epochs 5 trains the fifth (status $st)" \
	"[ $st -eq 0 ] && grep -q 'resuming after epoch 4 of 5' '$T/more.log' && grep -q 'epoch 5/5: .*, 3 device(s)' '$T/more.log' && [ \"\$(losses '$T/whole.sum')\" = \"\$(losses '$T/more.sum' | head -n 4)\" ] && [ \"\$(losses '$T/more.sum' | wc -l)\" -gt \"\$(losses '$T/whole.sum' | wc -l)\" ]"

# What cannot be resumed is refused at once, saying why.
resume_refused() {
	what=$1 want=$2
	shift 2
	timeout 20 "$BIN/pipar-serve" --listen 127.0.0.1:$((port + 60)) --timeout 60 "$@" \
		>/dev/null 2>"$T/resume-bad.err"
	st=$?
	check "--resume $what is refused (status $st): $(head -c 150 "$T/resume-bad.err")" \
		"[ $st -eq 1 ] && grep -q -- \"$want\" '$T/resume-bad.err'"
}
resume_refused "of a checkpoint without a run" "holds no run to resume" --resume "$T/same-a.npz"
resume_refused "with another learning rate" "--lr 0.5 differs from the run's 0.01" \
	--resume "$T/whole.npz" --lr 0.5 --epochs 6
resume_refused "of a run that is done" "has done 4 epoch(s); give --epochs more" --resume "$T/whole.npz"
"$BIN/pipar-plan" --device "$T/d.json" --server "$T/s.json" --devices 2 --uplink 1gbit \
	--downlink 1gbit --batch 50 >"$T/p2.json"
resume_refused "with another plan" "is not the plan of the run" --resume "$T/whole.npz" \
	--plan "$T/p2.json" --epochs 6
"$BIN/pipar-serve" --plan "$T/p.json" --checkpoint-every 1 >/dev/null 2>"$T/every-usage.err"
st=$?
check "--checkpoint-every without a checkpoint file is a usage error (status $st)" \
	"[ $st -eq 2 ] && grep -q 'checkpoint-every needs --checkpoint FILE' '$T/every-usage.err'"

# SIGTERM in the middle of the second epoch (slow enough devices that an
# epoch lasts well over the half second waited).
serve term 3
for i in 0 1 2; do device term $i 600 --slowdown 8; done
for t in $(seq 1 600); do grep -q 'epoch 1/3' "$T/term.log" && break; sleep 0.1; done
sleep 0.5
kill -TERM $spid
wait $spid
st=$?
wait
check "SIGTERM stops the server with a message (status $st)" \
	"[ $st -eq 1 ] && grep -q 'SIGTERM: stopping' '$T/term.log' && grep -q 'stopped by SIGTERM after 1 of 3 epoch(s)' '$T/term.log'"
check "the checkpoint it leaves loads and scores far above chance" \
	"'$BIN/pipar-eval' accuracy --model '$T/term.npz' --data $data:test --limit 1000 >'$T/term.eval' && awk -F'[:,]' '/accuracy/ {for (i = 1; i <= NF; i++) if (\$i ~ /\"accuracy\"/) a = \$(i + 1)} END {exit !(a + 0 > 0.3)}' '$T/term.eval'"
check "the summary holds the finished epoch and why the devices stopped" \
	"grep -q 'the run was stopped in epoch 2' '$T/term.sum' && /usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(len(s[\"epochs\"]) != 1)' '$T/term.sum'"
check "the devices are told the run ended" \
	"grep -q 'the server ended the run early' '$T/term.dev0' && grep -q 'the server ended the run early' '$T/term.dev2'"

# SIGTERM on one device: it leaves, the others finish.
serve dterm 2
for i in 0 1 2; do
	device dterm $i 600 --slowdown 3
	[ $i = 1 ] && victim=$dpid
done
for t in $(seq 1 300); do grep -q 'device 3 is' "$T/dterm.log" && break; sleep 0.1; done
sleep 1
kill -TERM $victim
wait $victim
vs=$?
wait $spid
st=$?
wait
check "SIGTERM on a device stops it with a message (status $vs)" \
	"[ $vs -eq 1 ] && grep -q 'device-1: stopped by SIGTERM' '$T/dterm.dev1'"
check "and the others finish the run (status $st)" \
	"[ $st -eq 0 ] && grep -q 'epoch 2/2: .*, 2 device(s)' '$T/dterm.log'"
# A device killed in the middle of the run and started again rejoins at the
# next epoch's end, with the global model, and finishes.
serve rejoin 6
for i in 0 1 2; do
	device rejoin $i 300 --slowdown 2
	[ $i = 1 ] && victim=$dpid
done
for t in $(seq 1 300); do grep -q 'device 3 is' "$T/rejoin.log" && break; sleep 0.1; done
sleep 1
kill -9 $victim
for t in $(seq 1 300); do grep -q 'device 2 (device-1):' "$T/rejoin.log" && break; sleep 0.1; done
"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 1/3 --train-limit 300 \
	--timeout 60 --slowdown 2 2>"$T/rejoin.again" &
again=$!
PIDS="$PIDS $again"
wait $spid
st=$?
wait $again
ag=$?
wait
check "a device killed and started again rejoins at an epoch's end (server $st, device $ag)" \
	"[ $st -eq 0 ] && [ $ag -eq 0 ] && grep -q \"device 2 ('device-1') joins in epoch [2-6]\" '$T/rejoin.log' && grep -q 'joins the run in epoch' '$T/rejoin.again'"
check "and the last epoch has all three devices, none listed as failed" \
	"grep -q 'epoch 6/6: .*, 3 device(s)' '$T/rejoin.log' && ! grep -q '\"fault\"' '$T/rejoin.sum'"

# A device that starts after the run did joins at the next epoch's end.
# The run lasts long enough (4 epochs of slowed devices) for the late one
# to load its data and connect while it goes on.
serve late 4 --timeout 6
device late 0 300 --slowdown 3
device late 1 300 --slowdown 3
for t in $(seq 1 300); do grep -q '2 of 3 device(s) connected' "$T/late.log" && break; sleep 0.1; done
device late 2 300 --slowdown 3
wait $spid
st=$?
wait
check "a device that starts late joins the run under way (status $st)" \
	"[ $st -eq 0 ] && grep -q \"device 3 ('device-2') joins in epoch [234]\" '$T/late.log' && grep -q 'epoch 4/4: .*, 3 device(s)' '$T/late.log'"
check "the summary records who trained when: 2 devices, then 3" \
	"/usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); n = [e[\"devices\"] for e in s[\"epochs\"]]; sys.exit(not (n[0] == 2 and n[-1] == 3))' '$T/late.sum'"

# --slowdown scales the processor time a stage used, not its wall time: a
# device that gets a small share of a processor (niced, beside a busy loop
# on the same one) computes slowly in wall time, and must not then sleep
# F-1 times that wall time.  Under that contention the compute busy time at
# F = 3 is the one at F = 1 plus 2 x the little processor time it used;
# scaled by wall time it would be 3 times as long.
if [ "$(nproc)" -ge 2 ] && taskset -c 1 true 2>/dev/null && command -v nice >/dev/null; then
	"$BIN/pipar-plan" --device "$T/d.json" --server "$T/s.json" --devices 1 --uplink 1gbit \
		--downlink 1gbit --batch 50 >"$T/p1.json"
	taskset -c 0 sh -c 'while :; do :; done' &
	burner=$!
	PIDS="$PIDS $burner"
	for f in 1 3; do
		port=$((port + 1))
		taskset -c 1 "$BIN/pipar-serve" --plan "$T/p1.json" --listen 127.0.0.1:$port \
			--epochs 1 --timeout 60 --summary "$T/slow$f.sum" >/dev/null 2>"$T/slow$f.log" &
		spid=$!
		# Niced from its start: reniced once admitted, it could train its
		# first stages (and take its pace) before the nice took hold.
		taskset -c 0 nice -n 19 "$BIN/pipar-device" --connect 127.0.0.1:$port --data $data \
			--shard 0/1 --train-limit 100 --slowdown $f --timeout 60 2>/dev/null &
		dpid=$!
		wait $dpid
		wait $spid
	done
	kill $burner
	busy() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["epochs"][0]["device_resources"][0]["compute_busy_seconds"])' "$1"; }
	b1=$(busy "$T/slow1.sum")
	b3=$(busy "$T/slow3.sum")
	if awk "BEGIN{exit !($b1 > 0.5)}"; then
		check "a device on a small share of a processor is slowed by its processor time (busy $b1 s at F=1, $b3 s at F=3)" \
			"awk 'BEGIN{exit !($b3 < 1.5 * $b1)}'"
	else
		ok "# SKIP --slowdown under contention: the device was not slowed (busy $b1 s)"
	fi
else
	ok "# SKIP --slowdown under contention: needs 2 processors, taskset and nice"
fi

# A device stopped (SIGSTOP) for 3 s and continued returns at once: the
# stop is not in the processor time its stage used, so --slowdown 3 does
# not make it sleep twice the stop again.  The epoch of the stopped run is
# the unstopped one's plus about 3 s; scaled by wall time it would be 6 s
# more when the stop falls in a computation.
"$BIN/pipar-plan" --device "$T/d.json" --server "$T/s.json" --devices 1 --uplink 1gbit \
	--downlink 1gbit --batch 50 >"$T/p1.json"
for run in go stop; do
	port=$((port + 1))
	"$BIN/pipar-serve" --plan "$T/p1.json" --listen 127.0.0.1:$port --epochs 1 --timeout 60 \
		--summary "$T/$run.sum" >/dev/null 2>"$T/$run.log" &
	spid=$!
	PIDS="$PIDS $spid"
	"$BIN/pipar-device" --connect 127.0.0.1:$port --data $data --shard 0/1 --train-limit 1500 \
		--slowdown 3 --timeout 60 2>"$T/$run.dev" &
	dpid=$!
	PIDS="$PIDS $dpid"
	if [ $run = stop ]; then
		for t in $(seq 1 300); do grep -q 'device 1 is' "$T/$run.log" && break; sleep 0.05; done
		sleep 0.5
		kill -STOP $dpid
		sleep 3
		kill -CONT $dpid
	fi
	wait $dpid
	wait $spid
done
secs() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["epochs"][0]["seconds"])' "$1"; }
s_go=$(secs "$T/go.sum")
s_stop=$(secs "$T/stop.sum")
check "a device stopped for 3 s with --slowdown 3 comes back promptly (epoch $s_go s, $s_stop s with the stop)" \
	"awk 'BEGIN{exit !($s_stop > $s_go + 2 && $s_stop < $s_go + 5.5)}'"

# Outputs that cannot be written are refused before any device is waited
# for (the server would wait 60 s for devices otherwise).
for o in checkpoint summary trace; do
	timeout 20 "$BIN/pipar-serve" --plan "$T/p.json" --listen 127.0.0.1:$((port + 50)) \
		--timeout 60 --$o "$T/no/such/dir/x" >/dev/null 2>"$T/bad-$o.err"
	st=$?
	check "a --$o that cannot be written is refused before training (status $st)" \
		"[ $st -eq 1 ] && grep -q \"cannot write '$T/no/such/dir/x'\" '$T/bad-$o.err'"
done
timeout 20 "$BIN/pipar-device" --connect 127.0.0.1:$((port + 50)) --data $data --shard 0/3 \
	--trace "$T/no/such/dir/t" 2>"$T/bad-dtrace.err"
st=$?
check "a device's --trace that cannot be written is refused before it connects (status $st)" \
	"[ $st -eq 1 ] && grep -q \"cannot write '$T/no/such/dir/t'\" '$T/bad-dtrace.err'"
tap_done
