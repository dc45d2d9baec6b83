#!/usr/bin/env bash
# End-to-end throughput of eligo on generated 834 files (issue 6).
#
#   tools/bench.sh                 # 10 MB, 100 MB and 1 GB
#   GEN_SIZES="10 100" tools/bench.sh
#
# Builds the release binaries, generates seeded change files (eligo-gen, seed 1) into a temp
# directory (BENCH_DIR to choose it; removed afterwards unless KEEP=1), and prints one table:
# for each size, `wc -l` (the floor: reading the file once), `eligo check`, `eligo convert`
# and, when the binary has it, `eligo run`, each as seconds, MB/s, peak RSS (from
# /usr/bin/time -v) and the ratio to `wc -l`. Every command reads the file once before timing
# so that all of them read from the page cache. REPEAT (default 3) runs each command that
# many times and keeps the fastest; one job and every core run alternately, and the speed-ups
# are given both ways: best against best, and the median of the alternating pairs' ratios.
set -euo pipefail

SIZES=${GEN_SIZES:-"10 100 1024"}
REPEAT=${REPEAT:-3}
# shellcheck source=tools/bench-setup.sh
. "$(dirname "$0")/bench-setup.sh"

has_run=0
if "$bin/eligo" run --help >/dev/null 2>&1; then has_run=1; fi

# time_cmd CMD... : prints "seconds rss_kb", the fastest wall time of REPEAT runs (measured
# with bash's microsecond clock: /usr/bin/time rounds to 10 ms) and the largest peak RSS.
time_cmd() {
    local best_s="" best_rss=0 i s rss log t0 t1
    log=$(mktemp)
    for ((i = 0; i < REPEAT; i++)); do
        t0=$EPOCHREALTIME
        /usr/bin/time -v -o "$log" "$@" >/dev/null 2>&1 || true
        t1=$EPOCHREALTIME
        s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
        if [ -z "$best_s" ] || awk -v a="$s" -v b="$best_s" 'BEGIN {exit !(a < b)}'; then
            best_s=$s
        fi
        [ "$rss" -gt "$best_rss" ] && best_rss=$rss
    done
    rm -f "$log"
    echo "$best_s $best_rss"
}

# time_pair CMD... : runs CMD with one job and with every core, alternately, REPEAT rounds;
# prints "s1 rss1 sn rssn ratio": each side's fastest time and largest peak RSS, and the
# median over the rounds of (one job / every core) for that round. On a VM whose speed drifts
# from one minute to the next (±15 % seen here), a ratio of two runs taken seconds apart
# moves less than one of two bests taken minutes apart.
time_pair() {
    local i a b ratios=() s1="" rss1=0 sn="" rssn=0 t r
    for ((i = 0; i < REPEAT; i++)); do
        read -r a r < <(REPEAT=1 time_cmd env ELIGO_JOBS=1 "$@")
        [ "$r" -gt "$rss1" ] && rss1=$r
        read -r b r < <(REPEAT=1 time_cmd "$@")
        [ "$r" -gt "$rssn" ] && rssn=$r
        if [ -z "$s1" ] || awk -v x="$a" -v y="$s1" 'BEGIN {exit !(x < y)}'; then s1=$a; fi
        if [ -z "$sn" ] || awk -v x="$b" -v y="$sn" 'BEGIN {exit !(x < y)}'; then sn=$b; fi
        ratios+=("$(awk -v x="$a" -v y="$b" 'BEGIN {printf "%.4f", (y > 0) ? x / y : 0}')")
    done
    t=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR] = $1} END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    echo "$s1 $rss1 $sn $rssn $t"
}

# speedup WHAT S1 SN RATIO : one line of the speed-up summary.
speedup() {
    awk -v w="$1" -v a="$2" -v b="$3" -v r="$4" -v n="$(nproc)" -v k="$REPEAT" 'BEGIN {
        printf "  %s 1 job %.3f s, %d jobs %.3f s: speed-up %.2fx (best against best), %.2fx (median of %d alternating pairs)\n", w, a, n, b, a / b, r, k }'
}

# The CPU too: tables from two VMs of the same kind differed by 1.7x per core.
cpu=$(awk -F': ' '/^model name/ {m = $2} /^cpu family/ {f = $2} /^model\t/ {n = $2}
    END {printf "%s (family %s, model %s)", m, f, n}' /proc/cpuinfo 2>/dev/null)
echo "eligo $("$bin/eligo" --version | cut -d' ' -f2), $(nproc) core(s) of ${cpu:-an unknown CPU}, load $(cut -d' ' -f1-3 /proc/loadavg), REPEAT=$REPEAT"
printf '%-8s %-14s %9s %10s %10s %9s\n' size command seconds MB/s "RSS MB" "x wc -l"
inside=
for mb in $SIZES; do
    f=$dir/change-$mb.x12
    [ -f "$f" ] || "$bin/eligo-gen" --size-mb "$mb" --seed 1 -o "$f" 2>/dev/null
    bytes=$(stat -c %s "$f")
    cat "$f" >/dev/null
    read -r floor floor_rss < <(time_cmd wc -l "$f")
    row() {
        local name=$1 s=$2 rss=$3
        awk -v n="$name" -v mb="$mb" -v s="$s" -v rss="$rss" -v b="$bytes" -v f="$floor" 'BEGIN {
            if (s <= 0) s = 0.005; ff = (f <= 0) ? 0.005 : f
            printf "%-8s %-14s %9.3f %10.0f %10.1f %9.1f\n", mb " MB", n, s, b / 1e6 / s, rss / 1024, s / ff }'
    }
    row "wc -l" "$floor" "$floor_rss"
    # One job, then every core (the file's set cut into pieces checked in parallel,
    # eligo::split), alternately.
    read -r s1 rss1 s rss ratio < <(time_pair "$bin/eligo" check "$f")
    row "check, 1 job" "$s1" "$rss1"
    row "eligo check" "$s" "$rss"
    inside="$inside$(speedup "$mb MB: check" "$s1" "$s" "$ratio")\n"
    read -r s1 rss1 s rss ratio < <(time_pair "$bin/eligo" convert "$f")
    row "convert, 1 job" "$s1" "$rss1"
    row "eligo convert" "$s" "$rss"
    inside="$inside$(speedup "$mb MB: convert" "$s1" "$s" "$ratio")\n"
    if [ "$has_run" = 1 ]; then
        # A fresh state each time: the sample configuration, its inbound folder holding only
        # this file (a hard link), everything else under $dir/run-$mb. The timed command is the
        # whole nightly run: validate, rules, changes, acks, reports, state.
        w=$dir/run-$mb
        mkdir -p "$w"
        # The generated files name their sponsor 069990001 (N1*P5, no REF*38): configure
        # the sample group under that number so the business rules run for real.
        sed -e "s|^inbound = .*|inbound = [\"$w/in\"]|" -e "s|\"var/|\"$w/var/|" \
            -e 's/"GRP1001"/"069990001"/g' \
            "$root/samples/eligo.toml" >"$w/eligo.toml"
        printf 'rm -rf "%s/var" "%s/in" && mkdir -p "%s/in" && ln "%s" "%s/in/" && exec "%s/eligo" run --config "%s/eligo.toml" --as-of 2025-01-11\n' \
            "$w" "$w" "$w" "$f" "$w" "$bin" "$w" >"$w/once.sh"
        read -r s rss < <(time_cmd bash "$w/once.sh")
        row "eligo run" "$s" "$rss"
    else
        printf '%-8s %-14s %s\n' "$mb MB" "eligo run" "(no run subcommand in this build: skipped)"
    fi
done

echo
echo "Inside one file (one set cut at subscriber boundaries), $(nproc) core(s):"
printf '%b' "$inside"

# Many files: the smallest file 8 times, one job versus one per core (ELIGO_JOBS).
mb=${SIZES%% *}
f=$dir/change-$mb.x12
many=()
for i in 1 2 3 4 5 6 7 8; do ln -sf "$f" "$dir/many-$i.x12"; many+=("$dir/many-$i.x12"); done
echo
echo "8 files of $mb MB, $(nproc) core(s):"
for cmd in check convert; do
    read -r s1 _ sn _ ratio < <(time_pair "$bin/eligo" $cmd "${many[@]}")
    speedup "$(printf 'eligo %-8s' "$cmd")" "$s1" "$sn" "$ratio"
done
