#!/bin/sh
# Every EXAMPLES block of every man page runs, as written, and succeeds.
#
# The convention the pages follow: in the EXAMPLES section, a line of a
# .Bd -literal block that starts with "$ " is a command; the lines after
# it belong to it while the command is not complete (it ends in a
# backslash, or the shell says it is unfinished: a for loop, a here
# document); any other line is output the page shows, not run.  A block
# right after a comment line
#     .\" not run: REASON
# is not run (it needs other machines, or shows a failure on purpose); a
# block right after
#     .\" file: NAME
# is a file the page shows, written to NAME for the commands after it.
# The commands of one page run in order in one shell (bash, with pipefail:
# a pipeline fails when any part does), in a scratch
# directory, with the programs first on PATH, so that later examples use
# the files earlier ones made and wait waits for servers started with &.
# TAP output, one check per command.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${PIPAR_BIN:-$ROOT/bin}" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

# Writes the commands of page $1 as a shell script: each command followed
# by a line that records its exit status.
extract() {
	/usr/bin/python3 - "$1" <<'PY'
import re, subprocess, sys

def unroff(line):
    line = line.replace("\\e", "\x00").replace("\\&", "").replace("\\-", "-")
    line = line.replace("\\(aq", "'").replace("\\(dq", '"')
    return line.replace("\x00", "\\")

def complete(text):
    return subprocess.run(["sh", "-n"], input=text, text=True,
                          stderr=subprocess.DEVNULL).returncode == 0

lines = open(sys.argv[1]).read().split("\n")
on = block = skip = False
prev = ""
cmds = []
cur = None
heredoc = None
fileblock = None
for line in lines:
    if line.startswith(".Sh "):
        on = line == ".Sh EXAMPLES"
        continue
    if not on:
        continue
    if line.startswith(".Bd -literal"):
        block, skip = True, prev.startswith('.\\" not run:')
        m = re.match(r'\.\\" file: (\S+)$', prev)
        fileblock = m.group(1) if m else None
        if fileblock:
            cmds.append("cat > %s <<'PIPAR_EOF'" % fileblock)
        cur = heredoc = None
        continue
    if line.startswith(".Ed"):
        if fileblock:
            cmds[-1] += "\nPIPAR_EOF"
        block = False
        cur = heredoc = fileblock = None
        continue
    prev = line
    if not block or skip:
        continue
    text = unroff(line)
    if fileblock:
        cmds[-1] += "\n" + text
        continue
    if cur is not None and (heredoc is not None or cur.endswith("\\") or
                            not complete(cur + "\n")):
        cur += "\n" + text
        cmds[-1] = cur
        if heredoc is not None and text.strip() == heredoc:
            heredoc = None
        continue
    cur = None
    if text.startswith("$ "):
        cur = text[2:]
        cmds.append(cur)
        m = re.search(r"<<-?\s*'?(\w+)'?", cur)
        heredoc = m.group(1) if m else None
for i, c in enumerate(cmds):
    first = re.sub(r"[^A-Za-z0-9 ._/:=@,-]", "", c.split("\n")[0])[:70]
    print(c)
    print("echo \"$? %d %s\" >&3" % (i + 1, first))
print("wait")
PY
}

for page in "$ROOT"/man/man*/*.[157]; do
	name=$(basename "$page")
	d=$T/$name
	mkdir -p "$d"
	extract "$page" >"$d.sh" || { nok "$name: its examples can be read"; continue; }
	grep -q '>&3$' "$d.sh" || continue
	(cd "$d" && PATH="$BIN:/usr/bin:$PATH" OPENBLAS_NUM_THREADS=1 bash -o pipefail "$d.sh" 3>"$d.status" \
		>"$d.out" 2>"$d.err" </dev/null)
	while read -r rc i what; do
		check "$name, example command $i: $what" "[ $rc -eq 0 ]" ||
			tail -n 5 "$d.err" | sed 's/^/# /' >&2
	done <"$d.status"
	want=$(grep -c '>&3$' "$d.sh")
	check "$name: all $want example commands ran" "[ \$(wc -l <'$d.status') -eq $want ]"
done
tap_done
