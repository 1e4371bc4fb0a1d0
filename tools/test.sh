#!/usr/bin/env bash
# The test command (the README's second line; .ci/run calls it): every test of the workspace, in one build,
# optimized as a release is but without LTO (Cargo.toml's `ci` profile, into target/ci). Three cargo features
# need more than Rust: `keras` (libhdf5), `mpi` (Open MPI, and libclang for its bindings), and the simulated
# CUDA backend `cuda-sim` (a C++ compiler). Each is
# built when its libraries are found and its tests skipped with a notice when not, so a fresh machine needs
# only Rust, and CI (which installs them) builds once: a second build with the features rebuilt most of the
# dependency tree (bindgen turns on other features of syn and regex) and took a third of CI's time.
#   bash tools/test.sh [ARGS FOR cargo test]     e.g. bash tools/test.sh -- mpi::
set -euo pipefail
cd "$(dirname "$0")/.."
features=()
if pkg-config --exists hdf5 2>/dev/null; then
    features+=(kiln/keras kiln-cli/keras)
else
    echo "notice: libhdf5 not found: the Keras import and export tests are skipped (Debian: libhdf5-dev)" >&2
fi
# (`grep -q` would end the pipe early, and pipefail would read ldconfig's SIGPIPE as "not found".)
libs=$(ldconfig -p 2>/dev/null || true)
if pkg-config --exists mpi 2>/dev/null && command -v mpirun >/dev/null && [[ $libs =~ libclang[-.0-9]*\.so ]]; then
    features+=(kiln/mpi kiln-cli/mpi)
else
    echo "notice: Open MPI or libclang not found: the MPI training tests are skipped (Debian: libopenmpi-dev openmpi-bin libclang-dev)" >&2
fi
# The CUDA backend: its kernels compiled as host C++ too (kiln/cuda-sim), so its tests run them without a GPU;
# and the CLI built with `--device cuda`. Needs a C++ compiler (Debian: g++). The test that compiles the
# kernels for GPUs needs NVRTC, which tools/fetch_models.sh puts in models/nvrtc.
if command -v c++ >/dev/null; then
    features+=(kiln/cuda-sim kiln-cli/cuda)
else
    echo "notice: no C++ compiler: the CUDA backend's tests are skipped (Debian: g++)" >&2
fi
if [[ -d models/nvrtc ]]; then
    export LD_LIBRARY_PATH="$PWD/models/nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
    echo "notice: models/nvrtc not found: the CUDA kernels are not compiled for GPUs (bash tools/fetch_models.sh)" >&2
fi
flags=()
if ((${#features[@]})); then
    flags=(--features "$(IFS=,; echo "${features[*]}")")
fi
exec cargo test --profile ci --workspace "${flags[@]}" "$@"
