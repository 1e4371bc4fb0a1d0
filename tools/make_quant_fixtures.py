"""GGML block quantization (Q8_0, Q4_0, Q4_1) computed by ggml's own Python package, written as a JSON fixture.

Run:  .bench-venv/bin/pip install gguf==0.19.0 && .bench-venv/bin/python tools/make_quant_fixtures.py
Writes crates/kiln-core/tests/fixtures/quant/quant.json, read by crates/kiln-core/tests/suite/quant.rs.

gguf-py (`gguf.quants`) reproduces ggml's reference quantizers `quantize_row_*_ref` bit for bit, so the
fixture holds, for each case and type: the f32 input, the GGUF bytes as hex, and the dequantized f32 values.
kiln must produce the same bytes and the same values exactly. The cases cover the rounding rules: all zeros,
one huge value (all others round to 0 or its neighbour), a negative value of largest magnitude (Q4_0's scale
takes its sign), a +/- tie in magnitude (the first one wins), exact .5 ties, tiny values (subnormal f16
scales), constant blocks (Q4_1 with d = 0), and normal values from a fixed seed.
"""
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln-core", "tests", "fixtures", "quant")
TYPES = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1}


def cases():
    rng = np.random.default_rng(20240601)
    out = {}
    out["zeros"] = np.zeros(64)
    huge = rng.standard_normal(64) * 0.01
    huge[37] = 1000.0
    out["one_huge"] = huge
    neg = rng.standard_normal(96)
    neg[5], neg[40], neg[90] = -7.5, -3.25, -100.0
    out["negative_maxima"] = neg
    tie = np.linspace(-1.0, 1.0, 64)
    tie[3], tie[20] = 2.0, -2.0  # equal magnitude: +2 comes first
    tie[40], tie[50] = -2.0, 2.0  # -2 comes first
    out["magnitude_ties"] = tie
    # Multiples of 127/254 put Q8_0 values on exact .5 ties (d = 1 after amax 127); the same for Q4_0 steps.
    halves = np.concatenate([np.arange(-15.5, 16.5, 1.0), np.arange(-8.0, 8.0, 0.5)])
    halves[0] = 127.0
    out["half_ties"] = halves
    out["tiny"] = rng.standard_normal(64) * 1e-6
    out["constant"] = np.concatenate([np.full(32, 0.75), np.full(32, -2.5)])
    out["normal"] = rng.standard_normal(128)
    out["wide_range"] = rng.standard_normal(64) * np.logspace(-3, 3, 64)
    return {k: v.astype(np.float32) for k, v in out.items()}


def main():
    fixture = {
        "_comment": f"Written by tools/make_quant_fixtures.py with gguf {gguf_version()} and numpy {np.__version__}; "
        "rerun: .bench-venv/bin/pip install gguf && .bench-venv/bin/python tools/make_quant_fixtures.py",
        "cases": [],
    }
    for name, x in cases().items():
        case = {"name": name, "input": [float(v) for v in x]}
        for tname, qtype in TYPES.items():
            q = quants.quantize(x.reshape(1, -1), qtype)
            deq = quants.dequantize(q, qtype).reshape(-1).astype(np.float32)
            case[tname] = {"bytes": q.tobytes().hex(), "dequantized": [float(v) for v in deq]}
        fixture["cases"].append(case)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.normpath(os.path.join(OUT, "quant.json"))
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def gguf_version():
    from importlib.metadata import version

    return version("gguf")


if __name__ == "__main__":
    main()
