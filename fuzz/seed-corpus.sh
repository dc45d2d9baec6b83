#!/usr/bin/env bash
# Seeds every fuzz target's corpus with eligo's 834 samples (valid and broken ones).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
samples="$here/../samples/834"
for target in lexer check_834 split; do
    mkdir -p "$here/corpus/$target"
    for f in "$samples"/*.x12 "$samples"/errors/*; do
        [ -f "$f" ] || continue
        name="$(basename "$f")"
        case "$f" in */errors/*) name="errors-$name" ;; esac
        # The lexer target reads its options from the first two bytes: give it sane ones.
        if [ "$target" = lexer ]; then
            { printf '\377\007'; cat "$f"; } > "$here/corpus/$target/$name"
        else
            cp "$f" "$here/corpus/$target/$name"
        fi
    done
done
# The portal reader and the config loader start from their own samples.
mkdir -p "$here/corpus/portal_csv" "$here/corpus/config"
cp "$here"/../samples/portal/*.csv "$here/corpus/portal_csv/"
cp "$here"/../samples/eligo.toml "$here/corpus/config/"
echo "seeded $(ls "$here"/corpus/* | wc -l) corpus entries"
