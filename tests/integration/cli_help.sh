#!/usr/bin/env bash
# cli_help - every command answers --help and -h on stdout with exit 0, and its help names
# every long option the command accepts. The accepted options are read from the sources
# (each cmd_<verb>.c's getopt table, the job options table of jobopts.c for compress,
# submit and run, the key options main.c gives to the peer commands), so an option added
# without a line in the help fails here. compress/submit/run explain the MxBgG notation.
set -u
. "$(dirname "$0")/lib.bash"
: "${LMP_SOURCE_DIR:?}"
lmp_workdir
CLI="$LMP_SOURCE_DIR/cli"

# the commands: every cmd_<verb>.c's .name
cmds=$(sed -n 's/.*\.name *= *"\([a-z]*\)".*/\1/p' "$CLI"/cmd_*.c | sort -u)
[ "$(echo "$cmds" | wc -w)" -ge 13 ] || bad "found only these commands in $CLI: $cmds"

# long options of a getopt table: {"name", no_argument|required_argument|optional_argument
longopts() { grep -o '{"[a-z][a-z0-9-]*", *\(no\|required\|optional\)_argument' "$@" |
             sed 's/{"\([^"]*\)".*/\1/'; }
jobopts=$(sed -n 's/^ *\[LMP_JOBOPT_[A-Z_]*\] *= *{"\([a-z-]*\)".*/\1/p' "$CLI/jobopts.c")
[ "$(echo "$jobopts" | wc -w)" -ge 20 ] || bad "cannot read the job options from jobopts.c"
peers=$(sed -n 's/.*peers\[\] *= *{\(.*\)};.*/\1/p' "$CLI/main.c" | tr -d '",')
[ -n "$peers" ] || bad "cannot read the commands that take keys from main.c"

"$LMPRESS" --help > top.out 2> top.err; rc=$?
[ $rc = 0 ] || bad "lmpress --help exits $rc"
[ -s top.err ] && bad "lmpress --help wrote on stderr: $(head -1 top.err)"
"$LMPRESS" -h > top2.out 2>/dev/null || bad "lmpress -h fails"
cmp -s top.out top2.out || bad "lmpress -h differs from --help"

for c in $cmds; do
    grep -q "^  $c " top.out || bad "lmpress --help does not list '$c'"
    "$LMPRESS" "$c" --help > "$c.out" 2> "$c.err"; rc=$?
    [ $rc = 0 ] || { bad "lmpress $c --help exits $rc"; head -2 "$c.err"; continue; }
    [ -s "$c.err" ] && bad "lmpress $c --help wrote on stderr: $(head -1 "$c.err")"
    grep -q "^usage: " "$c.out" || bad "lmpress $c --help has no usage line"
    "$LMPRESS" "$c" -h > "$c.h.out" 2>/dev/null || bad "lmpress $c -h fails"
    cmp -s "$c.out" "$c.h.out" || bad "lmpress $c -h differs from --help"
    "$LMPRESS" help "$c" > "$c.help.out" 2>/dev/null || bad "lmpress help $c fails"
    cmp -s "$c.out" "$c.help.out" || bad "lmpress help $c differs from lmpress $c --help"
    # --help wins wherever it stands, even after options that would need a coordinator
    "$LMPRESS" "$c" --json --help > "$c.late.out" 2>/dev/null || bad "lmpress $c --json --help fails"

    opts=$(longopts "$CLI/cmd_$c.c")
    case $c in compress | submit | run) opts="$opts $jobopts json help" ;; esac
    case " $peers " in *" $c "*) opts="$opts key server-key" ;; esac
    [ -n "$opts" ] || bad "no options found for $c"
    for o in $opts; do
        # the option at the start of a help line: "  --name ..."
        grep -q -- "^ *--$o\b\|^ *-[a-z], --$o\b" "$c.out" ||
            bad "lmpress $c --help does not describe --$o"
    done
    # every described option says what it defaults to, or is required / a flag
    n_default=$(grep -c "default\|required" "$c.out")
    [ "$n_default" -ge 1 ] || bad "lmpress $c --help gives no defaults"
    echo "$c: $(echo $opts | wc -w) options described"
done

# the scheme notation, where a scheme is taken
for c in compress submit run; do
    grep -q "MxBgG: M codebooks of B bits" "$c.out" || bad "$c --help does not explain MxBgG"
    grep -q "2x8g8 = 2 codebooks x 8 bits per group of 8" "$c.out" ||
        bad "$c --help has no 2x8g8 example"
done

# an unknown option is still a usage error, on stderr
"$LMPRESS" status --no-such-option > /dev/null 2>&1; rc=$?
[ $rc = 2 ] || bad "an unknown option exits $rc, not 2"
"$LMPRESS" help no-such-command > /dev/null 2>&1; rc=$?
[ $rc = 2 ] || bad "lmpress help no-such-command exits $rc, not 2"
exit $fail
