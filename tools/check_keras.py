#!/usr/bin/env python3
"""Keras and kiln both ways, with Keras itself (not run in CI: it needs Keras and a backend; CI checks the
import against the committed fixtures instead):

1. The reference MNIST program's model, built and trained by Keras and saved as `model.save('mnist_model.h5')`
   does (and as .keras), is imported by `kiln import` and predicts the same probabilities for the first 200
   test digits (served by `kiln serve`, full float precision), within 1e-5.
2. `kiln export --format keras` of that model and of each fixture (crates/kiln/tests/fixtures/keras) loads in
   Keras 3 (`keras.models.load_model`) and predicts what kiln predicts, within 1e-5.

    cargo build --release -p kiln-cli --features keras
    KERAS_BACKEND=torch .bench-venv/bin/python tools/check_keras.py [--epochs 1]

Prints one line per check; exits 1 if any fails.
"""
import argparse
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.request

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
KILN = str(ROOT / "target" / "release" / "kiln")
TOL = 1e-5


def idx(name):
    with gzip.open(ROOT / "data" / "mnist" / name) as f:
        data = f.read()
    if data[2] == 8 and data[3] == 3:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28, 1).astype("float32") / 255.0
    return np.frombuffer(data, np.uint8, offset=8)


def kiln_predict(model, x):
    """kiln's probabilities for x, through `kiln serve` (nested arrays in, full precision out)."""
    p = subprocess.Popen([KILN, "serve", f"m={model}", "--port", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        addr = re.search(r"http://(\S+)", p.stdout.readline()).group(1)
        out = []
        for i in range(0, len(x), 50):
            body = json.dumps({"instances": x[i:i + 50].tolist()}).encode()
            req = urllib.request.Request(f"http://{addr}/v1/models/m/predict", body,
                                         {"Content-Type": "application/json"})
            for pred in json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]:
                probs = pred["probabilities"]
                out.append(list(probs.values()) if isinstance(probs, dict) else probs)
        return np.asarray(out, np.float64)
    finally:
        p.terminate()
        p.wait()


def report(what, got, want):
    worst = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    same = int(np.sum(np.argmax(got, 1) == np.argmax(want, 1))) if np.ndim(got) == 2 and np.shape(got)[1] > 1 else None
    ok = worst <= TOL
    agree = f", same class {same}/{len(got)}" if same is not None else ""
    print(f"{'ok    ' if ok else 'FAILED'} {what}: max |diff| {worst:.2e}{agree}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    print(f"keras {keras.__version__} ({keras.backend.backend()} backend)")
    ok = True
    x_train, y_train = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    x_test = idx("t10k-images-idx3-ubyte.gz")[:200]
    # The reference program (README), trained by Keras.
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, keras.utils.to_categorical(y_train, 10), epochs=a.epochs, batch_size=64,
              validation_split=0.1, verbose=2)
    want = model.predict(x_test, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for ext in ["h5", "keras"]:
            saved = tmp / f"mnist_model.{ext}"
            model.save(saved)
            imported = tmp / f"mnist_from_{ext}.safetensors"
            subprocess.check_call([KILN, "import", str(saved), "--output", str(imported)], stdout=subprocess.DEVNULL)
            ok &= report(f"kiln import mnist_model.{ext}, 200 test digits", kiln_predict(imported, x_test), want)
        # Back to Keras.
        imported = tmp / "mnist_from_h5.safetensors"
        back = tmp / "mnist_back.keras"
        subprocess.check_call([KILN, "export", str(imported), "--format", "keras", "--output", str(back)],
                              stdout=subprocess.DEVNULL)
        ok &= report("kiln export --format keras of it, loaded by Keras",
                     keras.models.load_model(back).predict(x_test, verbose=0), kiln_predict(imported, x_test))
        fixtures = ROOT / "crates" / "kiln" / "tests" / "fixtures" / "keras"
        for spec_path in sorted(fixtures.glob("*.json")):
            name = spec_path.stem
            if name == "functional":
                continue  # a graph model: kiln imports it (tests/suite/keras.rs) but writes Sequential models only
            spec = json.loads(spec_path.read_text())
            x = np.asarray(spec["inputs"][0]["data"], np.float32).reshape(spec["inputs"][0]["shape"])
            kiln_model = tmp / f"{name}.safetensors"
            subprocess.check_call([KILN, "import", str(fixtures / f"{name}.h5"), "--output", str(kiln_model)],
                                  stdout=subprocess.DEVNULL)
            out = tmp / f"{name}.keras"
            subprocess.check_call([KILN, "export", str(kiln_model), "--format", "keras", "--output", str(out)],
                                  stdout=subprocess.DEVNULL)
            got = keras.models.load_model(out).predict(x, verbose=0)
            want = np.asarray(spec["outputs"][0]["data"]).reshape(spec["outputs"][0]["shape"])
            ok &= report(f"fixture {name}: kiln import, export --format keras, Keras load_model", got, want)
    print("all checks passed" if ok else "some checks FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
