# Sourced by the bench scripts (tools/bench.sh, tools/bench-pyx12.sh): builds the release
# binaries and sets root, bin (their folder) and dir (the bench folder: BENCH_DIR, or a temp
# folder removed at exit unless KEEP=1).
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bins
bin=$CARGO_TARGET_DIR/release
dir=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$dir"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT
