#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 60); exits non-zero if any target crashed.
# Needs only crates.io (cargo-fuzz) and Debian packages (a C++ compiler for libFuzzer).
#
#   tools/fuzz-ci.sh [SECONDS]
set -euo pipefail

secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz-ci: installing g++ (libFuzzer is C++)"
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-ci: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only -Z flags; this lets a stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

cd "$root/fuzz"
./seed-corpus.sh
cargo fuzz build

status=0
for target in $(cargo fuzz list); do
    echo "fuzz-ci: $target for ${secs}s"
    if cargo fuzz run "$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; then
        echo "fuzz-ci: $target: no crash"
    else
        echo "fuzz-ci: $target CRASHED; input in fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
