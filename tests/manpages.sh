#!/bin/sh
# Documentation that cannot drift: every page passes mandoc's lint; each
# program's --help usage is its page's SYNOPSIS, word for word (white
# space aside); and three lists of options are one: those the usage names,
# those the page's OPTIONS section documents, and those the program
# accepts (its getopt_long tables in cmd/NAME.c).  -h, --help and
# --version are documented but not in the usage.  pipar-eval is compared
# sub-command by sub-command as well.  TAP output.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PIPAR_BIN:-$ROOT/bin}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/tap.inc"

for page in "$ROOT"/man/man*/*.[157]; do
	mandoc -Tlint -Wwarning "$page" >"$T/lint" 2>&1
	check "mandoc -Tlint: $(basename "$page")" "[ ! -s '$T/lint' ]" || sed 's/^/# /' "$T/lint"
done

# The text of section SEC of a page, rendered, on one line.
section() {
	mandoc -Tascii -O width=1000 "$1" | sed 's/.\x08//g' |
		awk -v s="$2" '/^[A-Z]/ { on = ($0 == s); next } on' | tr -s ' \n\t' '   ' |
		sed 's/^ *//; s/ *$//'
}
# Long options named in text on standard input, one per line, sorted.
opts() { grep -o -- '--[a-z][a-z-]*' | sort -u; }
# The long options of the getopt_long table that follows line FROM of a
# source file (the first table from there).
table() {
	awk -v from="$2" 'NR >= from && /struct option longopts\[\]/ { on = 1 }
		on && /\{"[a-z-]*",/ { sub(/.*\{"/, ""); sub(/".*/, ""); print "--" $0 }
		on && /^\t};/ { exit }' "$1" | sort -u
}
# The options documented in a page's OPTIONS section (.It Fl lines).
documented() {
	awk '/^\.Sh / { on = ($0 == ".Sh OPTIONS") } on && /^\.It/' "$1" |
		grep -o 'Fl -[a-z][a-z-]*' | sed 's/^Fl /-/' | sort -u
}
# same WHAT A B: the two lists in files A and B are equal.
same() {
	check "$1" "diff -u '$2' '$3' >'$T/diff'" || sed 's/^/# /' "$T/diff"
}

for src in "$ROOT"/cmd/*.c; do
	p=$(basename "$src" .c)
	page=$ROOT/man/man1/$p.1
	check "$p has a page" "[ -f '$page' ]" || continue
	"$BIN/$p" --help >"$T/usage"
	tr -s ' \n\t' '   ' <"$T/usage" | sed 's/^usage: *//; s/ *$//' >"$T/u"
	section "$page" SYNOPSIS >"$T/s"
	check "$p --help is its SYNOPSIS" "cmp -s '$T/u' '$T/s'" ||
		{ echo "# usage:    $(cat "$T/u")"; echo "# SYNOPSIS: $(cat "$T/s")"; }
	grep -n 'struct option longopts\[\]' "$src" | cut -d: -f1 >"$T/tables"
	: >"$T/all"
	while read -r line; do table "$src" "$line" >>"$T/all"; done <"$T/tables"
	# A --version handled before the tables (pipar-eval's) counts too.
	grep -q '"--version"' "$src" && echo --version >>"$T/all"
	sort -u "$T/all" >"$T/accepted"
	grep -v -x -e --help -e --version "$T/accepted" >"$T/accepted-nohelp"
	opts <"$T/usage" >"$T/named"
	same "$p: the usage names every option it accepts, and no other" "$T/accepted-nohelp" "$T/named"
	documented "$page" >"$T/doc"
	same "$p: OPTIONS documents every option it accepts, and no other" "$T/accepted" "$T/doc"
	check "$p: OPTIONS documents -h" "grep -q '^\.It Fl h' '$page'"
done

# pipar-eval, sub-command by sub-command: its own --help is its line of
# the SYNOPSIS, and names the options of its table.
section "$ROOT/man/man1/pipar-eval.1" SYNOPSIS >"$T/s"
for sc in accuracy trace timeline compare plot; do
	"$BIN/pipar-eval" $sc --help | tr -s ' \n\t' '   ' | sed 's/^usage: *//; s/ *$//' >"$T/u"
	check "pipar-eval $sc --help is its part of the SYNOPSIS" "grep -qF -- \"\$(cat '$T/u')\" '$T/s'" ||
		echo "# usage: $(cat "$T/u")"
	line=$(grep -n "^static int cmd_$sc(" "$ROOT/cmd/pipar-eval.c" | cut -d: -f1)
	if sed -n "$line,/^}/p" "$ROOT/cmd/pipar-eval.c" | grep -q 'struct option longopts'; then
		table "$ROOT/cmd/pipar-eval.c" "$line" | grep -v -x -e --help >"$T/acc"
	else
		: >"$T/acc"
	fi
	opts <"$T/u" >"$T/named"
	same "pipar-eval $sc: its usage names the options it accepts" "$T/acc" "$T/named"
done
tap_done
