#!/usr/bin/env bash
# Mutation testing of the fast kernels: every mutant cargo-mutants makes of kiln's own AVX-512 matrix kernel
# (sgemm.rs), the direct conv+pool kernels (conv_pool_direct.rs), the vectorized elementwise loops (unary.rs's
# slice loops, backend/cpu/mod.rs's bias/activation and column sums, backend/cpu/pool.rs's 2x2 max pooling) and the runtime feature
# dispatch (simd.rs), each run against the tests aimed at them (fast_paths.rs, fused.rs and the unit tests).
# The activations' definitions (UnaryOp::apply and deriv) are checked by the gradient checks and the reference
# fixtures instead. Results land in mutants.out/ (git-ignored); README.md ("How it is tested") gives the
# figures and why each survivor is harmless. Add --iterate to test only what a previous run did not catch.
#   cargo install --locked cargo-mutants   # once
#   bash tools/mutants.sh                  # about 35 minutes on 2 cores (~10 s a mutant)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo mutants -p kiln-core --profile mutants --gitignore true \
    --file crates/kiln-core/src/backend/cpu/sgemm.rs \
    --file crates/kiln-core/src/backend/cpu/conv_pool_direct.rs \
    --file crates/kiln-core/src/ops/unary.rs \
    --file crates/kiln-core/src/backend/cpu/mod.rs \
    --file crates/kiln-core/src/backend/cpu/pool.rs \
    --file crates/kiln-core/src/simd.rs \
    --re 'sgemm.rs|conv_pool_direct.rs|apply_slice|apply_in_place|deriv_slice|bias_act|add_column_sums|max_pool_2x2|simd.rs' \
    "$@" \
    -- --lib --test fast_paths --test fused
