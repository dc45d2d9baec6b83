#!/usr/bin/env bash
# Do two eligo binaries give byte-identical outputs? The guard for performance work.
#
#   tools/same-output.sh OLD_BINARY NEW_BINARY        # prints "ALL SAME" or the differences
#
# Both binaries run the same commands on the same inputs: the bundled samples, the public
# samples in ../shared/reference/public-samples (when present) and seeded generated files
# (a clean change file, one with 5 % errors, a full file, four sets with errors). Compared:
# `check` (human and JSON, one job and every core, with and without --config), `convert`
# (jsonl and csv, with rules and reject report), `ack`, and one nightly `run` over all of
# them (every output file, and the state database dumped as SQL). Work folder: SAME_DIR, or
# a temp folder removed at exit unless KEEP=1. Exit status 0 when everything is the same.
set -uo pipefail

old=$(realpath "$1")
new=$(realpath "$2")
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SAME_DIR:-$(mktemp -d)}
mkdir -p "$dir"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT
export SOURCE_DATE_EPOCH=1736553600 # 2025-01-11
asof=2025-01-11

inputs=$dir/inputs
if [ ! -d "$inputs" ]; then
    mkdir -p "$inputs"
    gen=$(dirname "$new")/eligo-gen
    [ -x "$gen" ] || gen=$(dirname "$old")/eligo-gen
    "$gen" --size-mb 10 --seed 1 -o "$inputs/gen-change-10.x12" 2>/dev/null
    "$gen" --size-mb 10 --seed 2 --error-rate 5 -o "$inputs/gen-err-10.x12" 2>/dev/null
    "$gen" --size-mb 4 --seed 3 --full -o "$inputs/gen-full-4.x12" 2>/dev/null
    "$gen" --size-mb 3 --seed 4 --sets 4 --error-rate 2 -o "$inputs/gen-sets-3.x12" 2>/dev/null
    cp "$root"/samples/inbound/* "$inputs/"
    for f in "$root"/samples/834/*.x12; do cp "$f" "$inputs/s834-$(basename "$f")"; done
    for f in "$root"/samples/834/errors/*; do cp "$f" "$inputs/err-$(basename "$f")"; done
    for f in "$root"/../shared/reference/public-samples/*; do
        [ -f "$f" ] && cp "$f" "$inputs/pub-$(basename "$f")"
    done
fi

# The sample configuration, with the generated files' sponsor (069990001) as its group.
config() {
    sed -e "s|^inbound = .*|inbound = [\"$1/in\"]|" -e "s|\"var/|\"$1/var/|" \
        -e 's/"GRP1001"/"069990001"/g' "$root/samples/eligo.toml" >"$1/eligo.toml"
}

outputs() { # BINARY OUT
    local b=$1 o=$2 f n
    rm -rf "$o" && mkdir -p "$o/run/in"
    config "$o/run"
    for f in "$inputs"/*; do
        n=$(basename "$f")
        case $n in
        *.csv)
            "$b" convert --as-of $asof --config "$o/run/eligo.toml" "$f" >"$o/$n.convert" 2>&1
            echo "exit $?" >>"$o/$n.convert"
            ;;
        *)
            "$b" check "$f" >"$o/$n.check" 2>&1
            echo "exit $?" >>"$o/$n.check"
            ELIGO_JOBS=1 "$b" check --format json "$f" >"$o/$n.check1.json" 2>&1
            "$b" check --format json --config "$o/run/eligo.toml" --as-of $asof \
                --report "$o/$n.report" "$f" >"$o/$n.checkrules.json" 2>&1
            echo "exit $?" >>"$o/$n.checkrules.json"
            "$b" convert "$f" >"$o/$n.jsonl" 2>"$o/$n.convert.err"
            echo "exit $?" >>"$o/$n.convert.err"
            ELIGO_JOBS=1 "$b" convert --to csv "$f" >"$o/$n.csv1" 2>&1
            "$b" convert --to csv --config "$o/run/eligo.toml" --as-of $asof \
                --report "$o/$n.creport" -o "$o/$n.rules.csv" "$f" >"$o/$n.convrules" 2>&1
            echo "exit $?" >>"$o/$n.convrules"
            "$b" ack "$f" >"$o/$n.ack" 2>&1
            echo "exit $?" >>"$o/$n.ack"
            ;;
        esac
        ln "$f" "$o/run/in/$n"
    done
    # The log's timestamps and the summary's elapsed time are the wall clock's: cut them.
    (cd "$o/run" && "$b" run --config "$o/run/eligo.toml" --as-of $asof 2>&1 |
        sed -E -e 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z +//' -e 's/^time: .*/time: (cut)/' >"$o/run.out"
        echo "exit ${PIPESTATUS[0]}" >>"$o/run.out")
    python3 - "$o/run/var/eligo.db" >"$o/run.db.sql" <<'EOF'
import sqlite3, sys
for line in sqlite3.connect(sys.argv[1]).iterdump():
    print(line)
EOF
    rm -f "$o"/run/var/eligo.db*
    rm -rf "$o/run/in"
}

outputs "$old" "$dir/old" &
outputs "$new" "$dir/new" &
wait
# Reports name the folder they were written to: compare with it replaced.
if diff -r <(cd "$dir/old" && find . -type f | sort) <(cd "$dir/new" && find . -type f | sort) >/dev/null &&
    diff -r -q "$dir/old" "$dir/new" >"$dir/diff.txt" 2>&1; then
    echo "ALL SAME ($(find "$dir/new" -type f | wc -l) files)"
    exit 0
fi
for f in $(cd "$dir/old" && find . -type f); do
    if ! cmp -s <(sed "s|$dir/old|DIR|g" "$dir/old/$f") <(sed "s|$dir/new|DIR|g" "$dir/new/$f" 2>/dev/null); then
        echo "DIFFERENT: $f"
        diff <(sed "s|$dir/old|DIR|g" "$dir/old/$f") <(sed "s|$dir/new|DIR|g" "$dir/new/$f") | head -5
        bad=1
    fi
done
(cd "$dir/new" && find . -type f | sort) | comm -13 <(cd "$dir/old" && find . -type f | sort) - | sed 's/^/ONLY NEW: /'
if [ -z "${bad:-}" ]; then
    echo "ALL SAME ($(find "$dir/new" -type f | wc -l) files; paths aside)"
    exit 0
fi
exit 1
