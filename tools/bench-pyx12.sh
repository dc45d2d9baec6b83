#!/usr/bin/env bash
# eligo check against pyx12's x12valid on the same generated 834 files (issue 6: "ahead of
# every 834 validator we know of by three orders of magnitude").
#
#   tools/bench-pyx12.sh                  # 1 MB and 10 MB
#   GEN_SIZES="1" tools/bench-pyx12.sh
#
# pyx12 (BSD, the validator whose maps eligo's schemas are generated from) is installed from
# PyPI into a throw-away virtualenv under the bench directory (BENCH_DIR, removed afterwards
# unless KEEP=1); PYX12_VERSION pins it (default 4.0.0). Each file is validated once by
# `x12valid -q` (it also writes a 997 beside the input) and REPEAT times (default 3, fastest
# kept) by `eligo check` with one job and with every core. pyx12 runs about 0.2 MB/s, so a
# 10 MB file takes about a minute and 100 MB about nine; it streams (22 MB peak RSS at 100 MB).
# pyx12 is timed by its CPU time (user + system), not its wall time: it runs on one thread, so
# on an idle machine the two agree, and on a busy one (a 13-minute pyx12 run rarely has the
# machine to itself) the CPU time does not count the time other processes held the core, which
# would inflate the ratio in eligo's favour. eligo is timed by wall time, as a user sees it.
set -euo pipefail

SIZES=${GEN_SIZES:-"1 10"}
REPEAT=${REPEAT:-3}
# shellcheck source=tools/bench-setup.sh
. "$(dirname "$0")/bench-setup.sh"

if [ ! -x "$dir/venv/bin/x12valid" ]; then
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet "pyx12==${PYX12_VERSION:-4.0.0}"
fi

# seconds CMD... : wall time of one run, from bash's microsecond clock.
seconds() {
    local t0 t1
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}'
}

# cpu_seconds CMD... : user + system CPU time of one run (GNU time, /usr/bin/time).
cpu_seconds() {
    local t
    t=$(mktemp)
    /usr/bin/time -f '%U %S' -o "$t" "$@" >/dev/null 2>&1 || true
    # A command that exits non-zero (x12valid 4.0.0 exits 1 on these files while printing
    # "OK") makes GNU time write "Command exited with non-zero status N" first: the figures
    # are the last line.
    tail -n 1 "$t" | awk '{printf "%.4f", $1 + $2}'
    rm -f "$t"
}

# best CMD... : the fastest of REPEAT runs.
best() {
    local b="" s i
    for ((i = 0; i < REPEAT; i++)); do
        s=$(seconds "$@")
        if [ -z "$b" ] || awk -v a="$s" -v b="$b" 'BEGIN {exit !(a < b)}'; then b=$s; fi
    done
    echo "$b"
}

echo "pyx12 $("$dir/venv/bin/pip" show pyx12 | awk '/^Version/ {print $2}'), eligo $("$bin/eligo" --version | cut -d' ' -f2), $(nproc) core(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-18s %9s %9s %14s\n' size command seconds MB/s "x pyx12 speed"
for mb in $SIZES; do
    f=$dir/change-$mb.x12
    [ -f "$f" ] || "$bin/eligo-gen" --size-mb "$mb" --seed 1 -o "$f" 2>/dev/null
    bytes=$(stat -c %s "$f")
    cat "$f" >/dev/null
    py=$(cpu_seconds "$dir/venv/bin/x12valid" -q "$f")
    one=$(best env ELIGO_JOBS=1 "$bin/eligo" check "$f")
    all=$(best "$bin/eligo" check "$f")
    row() {
        awk -v mb="$mb" -v c="$1" -v s="$2" -v n="$bytes" -v e="$3" \
            'BEGIN {printf "%-8s %-18s %9.3f %9.2f %14.0f\n", mb " MB", c, s, n / s / 1e6, e}'
    }
    ratio() { awk -v p="$py" -v a="$1" 'BEGIN {print p / a}'; }
    row "pyx12 (CPU time)" "$py" 1
    row "eligo check, 1 job" "$one" "$(ratio "$one")"
    row "eligo check" "$all" "$(ratio "$all")"
done
