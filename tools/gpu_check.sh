#!/usr/bin/env bash
# Every GPU check and benchmark in one run (issue 17), for a machine with an NVIDIA GPU and PyTorch.
#
#   bash tools/gpu_check.sh --build   # here (no CUDA needed): builds the CUDA test binary and gpubench,
#                                     # stripped, into .gpu/ (git-ignored; a few MiB, so it can travel)
#   bash tools/gpu_check.sh           # on the GPU machine, from the checkout with .gpu/ beside it
#
# It runs kiln-core's CUDA tests (every op's values and gradients against the CPU backend, an f32 network),
# then the seed's MNIST CNN trained on the CUDA backend and on the CPU (gpubench), then the same model in
# PyTorch eager on the same GPU (bench/gpu_peer.py), and prints a table with the ratio. Results go to
# stdout and, when OUT is set, to $OUT/gpu_check.log. cudarc looks for libnvrtc.so and libcublas.so by their
# CUDA 12 names; where the machine has CUDA 13's (libnvrtc.so.13), links under those names are made in a
# temporary folder put first on LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--build" ]; then
    set -e
    cargo build --profile ci -p kiln-bench --features cuda --bin gpubench
    suite=$(cargo test --profile ci -p kiln-core --features cuda --test suite --no-run --message-format=json \
        | python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable")][-1])')
    mkdir -p .gpu
    cp target/ci/gpubench .gpu/gpubench
    cp "$suite" .gpu/kiln-core-suite
    strip .gpu/gpubench .gpu/kiln-core-suite
    du -sh .gpu/*
    exit 0
fi

log=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$log") 2>&1
for b in .gpu/gpubench .gpu/kiln-core-suite; do
    [ -x "$b" ] || { echo "error: $b is missing: run 'bash tools/gpu_check.sh --build' on the build machine first"; exit 1; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "error: nvidia-smi failed: no GPU"; exit 1; }

libs=$(mktemp -d)
for name in nvrtc cublas cublasLt nvrtc-builtins; do
    f=$(find /usr/local /opt /usr/lib -name "lib$name.so*" 2>/dev/null | grep -v alt | sort -V | tail -1)
    if [ -n "$f" ]; then
        ln -sf "$f" "$libs/lib$name.so"
        export LD_LIBRARY_PATH="$(dirname "$f"):${LD_LIBRARY_PATH:-}"
        echo "lib$name: $f"
    fi
done
export LD_LIBRARY_PATH="$libs:$LD_LIBRARY_PATH"

echo
echo "== kiln-core CUDA tests"
timeout 240 .gpu/kiln-core-suite cuda --nocapture --test-threads 1
tests=$?

echo
echo "== MNIST CNN, batch 64, one epoch: kiln (CUDA backend, then CPU) and PyTorch eager"
kiln=$(timeout 300 .gpu/gpubench --epochs 1 --data data/mnist)
echo "$kiln"
peer=$(timeout 120 python3 bench/gpu_peer.py --epochs 1 --data data/mnist)
echo "$peer"
python3 - "$kiln" "$peer" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.startswith("{")]
peer = json.loads(sys.argv[2]) if sys.argv[2].strip() else None
print()
print("| run | epoch s | test acc | epoch vs PyTorch | images/s, batch 1000 | vs PyTorch |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    ratio = f"{r['epoch_s'] / peer['epoch_s']:.2f}x" if peer else "n/a"
    rate = f"{r['batch1000_img_s'] / peer['batch1000_img_s']:.2f}x" if peer else "n/a"
    print(f"| kiln, {r['device']} backend | {r['epoch_s']:.2f} | {r['test_acc']:.4f} | {ratio} "
          f"| {r['batch1000_img_s']:,.0f} | {rate} |")
if peer:
    print(f"| {peer['peer']} eager, {peer['gpu']} | {peer['epoch_s']:.2f} | {peer['test_acc']:.4f} | 1.00x "
          f"| {peer['batch1000_img_s']:,.0f} | 1.00x |")
PY
echo "tests exit status: $tests"
exit $tests
