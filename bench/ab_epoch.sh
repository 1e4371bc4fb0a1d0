#!/usr/bin/env bash
# Interleaved A/B of the MNIST CNN's training epoch: the kiln-bench binary built from another commit (A)
# against this checkout's (B), alternating, N runs each, then the median of each and their ratio.
#
#   bench/ab_epoch.sh BASE_COMMIT [N]        (default N = 5)
#
# Builds BASE_COMMIT in a git worktree under target/ab-base (its own target folder), and this checkout's
# kiln-bench, then runs `kiln-bench --models cnn --epochs 1` alternately. Run it on a quiet machine: a
# build or another benchmark running beside it distorts every figure.
set -euo pipefail
base=${1:?usage: bench/ab_epoch.sh BASE_COMMIT [N]}
n=${2:-5}
root=$(git rev-parse --show-toplevel)
cd "$root"
wt="$root/target/ab-base"
if [ ! -d "$wt" ]; then git worktree add --detach "$wt" "$base" >/dev/null; fi
git -C "$wt" checkout --quiet --detach "$base"
(cd "$wt" && cargo build --release -q -p kiln-bench --bin kiln-bench)
cargo build --release -q -p kiln-bench --bin kiln-bench
a="$wt/target/release/kiln-bench"
b="$root/target/release/kiln-bench"
# s/epoch, inference img/s at batch 1 and at batch 1000
row() { "$1" --models cnn --epochs 1 --data "$root/data/mnist" | awk -F'|' '/^\| *cnn/ {gsub(/[ ,]/,""); print $3, $6, $7}'; }
ae=(); be=(); a1=(); b1=(); ak=(); bk=()
# The order alternates too (A B, B A, ...), so that a drift of the machine does not favour one side.
for i in $(seq "$n"); do
  if (( i % 2 )); then
    read -r e one k < <(row "$a"); ae+=("$e"); a1+=("$one"); ak+=("$k")
    read -r e one k < <(row "$b"); be+=("$e"); b1+=("$one"); bk+=("$k")
  else
    read -r e one k < <(row "$b"); be+=("$e"); b1+=("$one"); bk+=("$k")
    read -r e one k < <(row "$a"); ae+=("$e"); a1+=("$one"); ak+=("$k")
  fi
  echo "run $i: A ${ae[-1]} s/epoch ${a1[-1]} ${ak[-1]} img/s; B ${be[-1]} s/epoch ${b1[-1]} ${bk[-1]} img/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo
echo "medians of $n interleaved runs; A = $(git -C "$wt" rev-parse --short HEAD), B = $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
echo
echo "| | A | B | B/A |"
echo "|---|---|---|---|"
for m in "s/epoch:ae:be" "infer img/s, batch 1:a1:b1" "infer img/s, batch 1000:ak:bk"; do
  IFS=: read -r label va vb <<< "$m"
  declare -n xa=$va xb=$vb
  ma=$(median "${xa[@]}"); mb=$(median "${xb[@]}")
  awk -v l="$label" -v a="$ma" -v b="$mb" 'BEGIN {printf "| %s | %s | %s | %.3f |\n", l, a, b, b / a}'
done
