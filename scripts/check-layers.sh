#!/usr/bin/env bash
# check-layers.sh — fails when a source file includes a header from a higher layer (or from a sibling layer), so
# the include graph stays one-way. Layers, bottom-up (docs/architecture.md):
#   core < kernels < io < tokenizer < model < dist < data, train < serve < cli
# data and train are siblings: neither may include the other. Run from anywhere: `scripts/check-layers.sh [ROOT]`;
# it is also the ctest `check_layers`.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root/src"

rank() {
    case $1 in
    core) echo 0 ;; kernels) echo 1 ;; io) echo 2 ;; tokenizer) echo 3 ;; model) echo 4 ;; dist) echo 5 ;;
    data | train) echo 6 ;; serve) echo 7 ;; cli) echo 8 ;; *) echo -1 ;;
    esac
}

# Known exceptions, each with the reason it is still there ("file -> header").
allowed=(
)

bad=0
while IFS= read -r line; do
    file=${line%%:*}
    rest=${line#*:}
    hdr=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' <<<"${rest#*:}")
    [[ $hdr == */* ]] || continue
    from=${file%%/*} to=${hdr%%/*}
    rf=$(rank "$from") rt=$(rank "$to")
    ((rf >= 0 && rt >= 0)) || continue
    [[ $from == "$to" ]] && continue
    if ((rt > rf || (rt == rf))); then
        for a in "${allowed[@]+"${allowed[@]}"}"; do [[ "$file -> $hdr" == "$a" ]] && continue 2; done
        echo "layering: $file includes $hdr ($to is not below $from)" >&2
        bad=1
    fi
done < <(grep -rn --include='*.c' --include='*.h' --include='*.inc' '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' . |
    sed 's|^\./||')
exit $bad
