#!/usr/bin/env bash
# Every GPU check and benchmark in one run (issue 17), for a machine with an NVIDIA GPU and PyTorch.
#
#   bash tools/gpu_check.sh --build   # here (no CUDA needed): builds the CUDA test binaries, gpubench and
#                                     # kiln, stripped and packed into .gpu/bins.tar.xz (git-ignored; 17 MB, so
#                                     # it travels where at most 64 MiB may: the binaries are 66 MB unpacked)
#   bash tools/gpu_check.sh           # on the GPU machine, from the checkout with .gpu/ beside it
#
# It runs kiln-core's CUDA tests (every op's values and gradients against the CPU backend, an f32 network,
# the bytes a step moves) and kiln's (fit and predict equal to the CPU's, MNIST accuracy after an epoch on
# the GPU), then the seed's MNIST CNN trained on the CUDA backend and on the CPU (gpubench), then the same
# model in PyTorch eager on the same GPU (bench/gpu_peer.py), and prints a table with the ratios; last, the
# reviews transformer (examples/reviews/sentiment_transformer.toml) trains an epoch with `kiln train
# --device cuda`. Results go to stdout and, when OUT is set, to $OUT/gpu_check.log. cudarc looks for
# libnvrtc.so and libcublas.so by their CUDA 12 names; where the machine has CUDA 13's (libnvrtc.so.13),
# links under those names are made in a temporary folder put first on LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--build" ]; then
    set -e
    cargo build --profile ci -p kiln-bench --features cuda --bin gpubench
    cargo build --profile ci -p kiln-cli --features cuda
    exe() { python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable")][-1])'; }
    suite=$(cargo test --profile ci -p kiln-core --features cuda --test suite --no-run --message-format=json | exe)
    kiln_suite=$(cargo test --profile ci -p kiln --features cuda --test suite --no-run --message-format=json | exe)
    out=target/gpu-bins
    rm -rf "$out" .gpu && mkdir -p "$out" .gpu
    cp target/ci/gpubench target/ci/kiln "$out"/
    cp "$suite" "$out"/kiln-core-suite
    cp "$kiln_suite" "$out"/kiln-suite
    strip "$out"/*
    tar -C "$out" -cf - . | xz -T2 -6 > .gpu/bins.tar.xz
    du -sh "$out" .gpu/bins.tar.xz
    exit 0
fi

log=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$log") 2>&1
if [ ! -f .gpu/bins.tar.xz ]; then
    echo "error: .gpu/bins.tar.xz is missing: run 'bash tools/gpu_check.sh --build' on the build machine first"
    exit 1
fi
bin=$(mktemp -d)
tar -C "$bin" -xJf .gpu/bins.tar.xz || { echo "error: could not unpack .gpu/bins.tar.xz"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "error: nvidia-smi failed: no GPU"; exit 1; }

# NVRTC and cuBLAS from one folder: the CUDA toolkit's when there is one, else the newest pip-installed
# (PyTorch's) copy; cuBLAS and cuBLASLt must come from the same release.
libs=$(mktemp -d)
dir=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if ls "$d"/libnvrtc.so* >/dev/null 2>&1 && ls "$d"/libcublas.so* >/dev/null 2>&1; then dir=$d; break; fi
done
if [ -z "$dir" ]; then
    f=$(find /opt /usr -name 'libcublas.so*' 2>/dev/null | sort -V | tail -1)
    [ -n "$f" ] && dir=$(dirname "$f")
fi
echo "CUDA libraries: ${dir:-not found}"
for name in nvrtc cublas cublasLt; do
    f=$(ls "$dir"/lib$name.so* 2>/dev/null | sort -V | tail -1)
    # NVRTC may sit in a sibling folder of cuBLAS's in pip's layout (nvidia/cuda_nvrtc/lib).
    [ -z "$f" ] && f=$(find "$(dirname "${dir:-/nonexistent}")/.." /opt /usr/local -name "lib$name.so*" 2>/dev/null | grep -v alt | sort -V | tail -1)
    if [ -n "$f" ]; then
        ln -sf "$f" "$libs/lib$name.so"
        export LD_LIBRARY_PATH="$(dirname "$f"):${LD_LIBRARY_PATH:-}"
        echo "  lib$name: $f"
    fi
done
export LD_LIBRARY_PATH="$libs:$LD_LIBRARY_PATH"

echo
echo "== kiln-core CUDA tests"
timeout 120 "$bin"/kiln-core-suite cuda --nocapture --test-threads 1
tests=$?
echo
echo "== kiln's CUDA tests: fit and predict equal the CPU's, MNIST accuracy after one epoch on the GPU"
timeout 120 "$bin"/kiln-suite cuda:: --test-threads 1 || tests=1

echo
echo "== MNIST CNN, batch 64, one epoch: kiln (CUDA backend, then CPU) and PyTorch eager"
kiln=$(timeout 120 "$bin"/gpubench --epochs 1 --data data/mnist)
echo "$kiln"
peer=$(timeout 60 python3 bench/gpu_peer.py --epochs 1 --data data/mnist)
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
for r in rows:
    if "one_image_ms" in r:
        print(f"\nkiln predict on the {r['device']} backend, from host memory: {r['batch100_img_s']:,.0f} images/s at "
              f"batch 100, {r['batch10000_img_s']:,.0f} at 10,000; one image {r['one_image_ms']:.3f} ms")
PY

echo
echo "== The reviews transformer trained from scratch, one epoch, on the CUDA backend (kiln train --device cuda)"
timeout 90 "$bin"/kiln train examples/reviews/sentiment_transformer.toml --device cuda --epochs 1 \
    --run-dir "$(mktemp -d)/transformer-cuda"
echo "tests exit status: $tests"
exit $tests
