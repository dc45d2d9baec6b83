#!/usr/bin/env bash
# Instruction counts of eligo's three jobs, to compare binaries on a machine too noisy for
# seconds: callgrind counts the same on a busy machine as on an idle one.
#
#   tools/callgrind.sh BINARY...          # e.g. tools/callgrind.sh /tmp/old/eligo target/release/eligo
#
# For each binary, with one job (ELIGO_JOBS=1): `eligo check`, `eligo convert -o FILE` and the
# nightly `eligo run` (the bench's set-up, tools/bench.sh: the sample configuration with the
# generated sponsor, a fresh state) on a generated 10 MB change file (`eligo-gen --size-mb 10
# --seed 1`; GEN_MB changes the size). Prints one line per binary: "BINARY check N convert N
# run N". Needs valgrind (Debian's package). The callgrind files stay in the work folder
# (CG_DIR, or a temp folder removed at exit unless KEEP=1) for `callgrind_annotate`. Each
# binary takes three to four minutes. Valgrind has no SHA-NI: convert's and run's counts hold
# the change id's SHA-256 in software, a much larger share than on the real CPU.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CG_DIR:-$(mktemp -d)}
mkdir -p "$dir"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT
export ELIGO_JOBS=1

gen=$(dirname "$(realpath "$1")")/eligo-gen
[ -x "$gen" ] || gen=$root/target/release/eligo-gen
[ -x "$gen" ] || cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin eligo-gen
[ -x "$gen" ] || gen=$root/target/release/eligo-gen
f=$dir/change-${GEN_MB:-10}.x12
[ -f "$f" ] || "$gen" --size-mb "${GEN_MB:-10}" --seed 1 -o "$f" 2>/dev/null

# count NAME CMD... : callgrind's instruction total for one run of CMD.
count() {
    local out=$dir/$1
    shift
    valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out" "$@" \
        >/dev/null 2>"$out.err" || true
    grep -o 'refs: *[0-9,]*' "$out.err" | tr -d ' ,' | cut -d: -f2
}

n=0
for b in "$@"; do
    bin=$(realpath "$b")
    n=$((n + 1))
    c=$(count "$n.check" "$bin" check "$f")
    v=$(count "$n.convert" "$bin" convert "$f" -o "$dir/$n.out.jsonl")
    w=$dir/run-$n
    rm -rf "$w" && mkdir -p "$w/in"
    ln "$f" "$w/in/" 2>/dev/null || cp "$f" "$w/in/"
    sed -e "s|^inbound = .*|inbound = [\"$w/in\"]|" -e "s|\"var/|\"$w/var/|" \
        -e 's/"GRP1001"/"069990001"/g' "$root/samples/eligo.toml" >"$w/eligo.toml"
    r=$(cd "$w" && count "$n.run" "$bin" run --config "$w/eligo.toml" --as-of 2025-01-11)
    echo "$b check $c convert $v run $r"
done
