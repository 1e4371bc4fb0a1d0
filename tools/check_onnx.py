#!/usr/bin/env python3
"""Runs kiln's exported ONNX cases in onnxruntime and compares them with kiln's own outputs.

The cases are written by kiln's test suite (crates/kiln/tests/suite/onnx.rs): for each, NAME.onnx and
NAME.json (its inputs and kiln's outputs). Each output must be within 1e-5 of kiln's (absolute, largest
element). Prints one line per case; exits 1 if any case fails or none is found.

    cargo test --release -p kiln --test suite onnx
    python3 tools/check_onnx.py [target/tmp/onnx-cases]

Needs onnxruntime and numpy (CI installs them into .ci-venv; locally: pip install onnxruntime numpy).
"""
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort

TOL = 1e-5


def main() -> int:
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/tmp/onnx-cases")
    cases = sorted(folder.glob("*.onnx"))
    if not cases:
        print(f"no ONNX cases in {folder}: run `cargo test --release -p kiln --test suite onnx` first")
        return 1
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    failed = 0
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}: {len(cases)} cases from {folder}")
    print(f"{'case':32} {'outputs':>8} {'max |diff|':>12}  result")
    for path in cases:
        spec = json.loads(path.with_suffix(".json").read_text())
        try:
            # The checker first: a malformed graph is named here rather than by the runtime.
            onnx.checker.check_model(onnx.load(str(path)), full_check=True)
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            feeds = {t["name"]: np.asarray(t["data"], np.float32).reshape(t["shape"]) for t in spec["inputs"]}
            got = sess.run([t["name"] for t in spec["outputs"]], feeds)
        except Exception as e:  # noqa: BLE001 - any failure of a case is reported as that case's
            print(f"{path.stem:32} {'':>8} {'':>12}  FAILED: {str(e).splitlines()[0][:200]}")
            failed += 1
            continue
        worst = 0.0
        for t, g in zip(spec["outputs"], got):
            want = np.asarray(t["data"], np.float32).reshape(t["shape"])
            if g.shape != want.shape:
                worst = float("inf")
                break
            worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - want))))
        ok = worst <= TOL
        failed += not ok
        print(f"{path.stem:32} {len(got):>8} {worst:>12.2e}  {'ok' if ok else 'FAILED'}")
    print(f"{len(cases) - failed} of {len(cases)} cases within {TOL:g} of kiln")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
