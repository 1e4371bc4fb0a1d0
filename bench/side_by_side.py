"""kiln next to Keras (TensorFlow CPU) and PyTorch on the reference MNIST CNN, measured in one run.

    python3 bench/side_by_side.py [--epochs 3] [--frameworks keras,torch1,torch2,kiln]

The first run creates .bench-venv/ with tensorflow-cpu, torch and numpy from PyPI (about 2 GB; not part of
CI). Every framework trains the same model on the same 60,000 MNIST images (batch 64, Adam, no validation)
in a process of its own, so each peak RSS is its own; the table gives each figure and kiln's ratio to it.
Seconds per epoch are medians over --epochs epochs; inference rates are medians of five passes over the
10,000 test images.
"""
import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VENV = os.path.join(ROOT, ".bench-venv")
DATA = os.path.join(ROOT, "data", "mnist")


def venv_python():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    check = subprocess.run([py, "-c", "import tensorflow, torch, numpy"], capture_output=True)
    if check.returncode != 0:
        print("installing tensorflow-cpu, torch, numpy into .bench-venv (once)...", file=sys.stderr)
        subprocess.check_call([py, "-m", "pip", "install", "-q", "tensorflow-cpu", "torch", "numpy"])
    return py


def load(prefix):
    import numpy as np

    def read(name):
        with gzip.open(os.path.join(DATA, name + ".gz")) as f:
            return f.read()

    img = read(f"{prefix}-images-idx3-ubyte")
    lab = read(f"{prefix}-labels-idx1-ubyte")
    x = np.frombuffer(img, dtype=np.uint8, offset=16).reshape(-1, 28, 28, 1).astype("float32") / 255.0
    y = np.frombuffer(lab, dtype=np.uint8, offset=8).astype("int64")
    return x, y


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_keras(epochs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from tensorflow import keras

    (x, y), (xt, yt) = load("train"), load("t10k")
    y1, yt1 = keras.utils.to_categorical(y, 10), keras.utils.to_categorical(yt, 10)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.fit(x, y1, epochs=1, batch_size=64, verbose=0)
        times.append(time.perf_counter() - t)
    model.predict(xt[:1000], batch_size=1000, verbose=0)
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        p = model.predict(xt, batch_size=1000, verbose=0)
        rates.append(len(xt) / (time.perf_counter() - t))
    infer = statistics.median(rates)
    acc = float((np.argmax(p, 1) == yt).mean())
    return {"epoch_s": statistics.median(times), "epochs": times, "batch1000": infer, "rss": peak_rss_mib(), "test_acc": acc}


def run_torch(epochs, threads):
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    (x, y), (xt, yt) = load("train"), load("t10k")
    x, y = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
    xt, yt = torch.from_numpy(xt).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(yt)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(5408, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        model.train()
        t = time.perf_counter()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        model(xt[:1000])
        rates = []
        for _ in range(5):
            t = time.perf_counter()
            preds = torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, len(xt), 1000)])
            rates.append(len(xt) / (time.perf_counter() - t))
        infer = statistics.median(rates)
    acc = float((preds == yt).float().mean())
    return {"epoch_s": statistics.median(times), "epochs": times, "batch1000": infer, "rss": peak_rss_mib(), "test_acc": acc}


def run_kiln(epochs):
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "kiln-bench"], cwd=ROOT)
    exe = os.path.join(ROOT, "target", "release", "kiln-bench")
    out = subprocess.run([exe, "--child", "cnn", "--epochs", str(epochs)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"epoch_s": r["epoch_s"], "batch1000": r["batch1000"], "rss": r["rss"], "test_acc": r["test_acc"]}


def child(name, epochs):
    if name == "keras":
        r = run_keras(epochs)
    elif name.startswith("torch"):
        r = run_torch(epochs, int(name[len("torch"):] or "1"))
    else:
        raise SystemExit(f"unknown framework {name}")
    print(json.dumps(r))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--frameworks", default="keras,torch1,torch2,kiln")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.epochs)
    names = a.frameworks.split(",")
    py = venv_python() if any(n != "kiln" for n in names) else None
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; MNIST CNN, 60,000 images, batch 64, Adam; median of {a.epochs} epochs\n")
    results = {}
    for n in names:
        print(f"running {n}...", file=sys.stderr, flush=True)
        if n == "kiln":
            results[n] = run_kiln(a.epochs)
        else:
            out = subprocess.run([py, os.path.abspath(__file__), "--child", n, "--epochs", str(a.epochs)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{n} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}", file=sys.stderr)
                continue
            results[n] = json.loads(out.stdout.strip().splitlines()[-1])
    label = {"keras": "Keras 3 / TensorFlow (CPU)", "torch1": "PyTorch, 1 thread", "torch2": "PyTorch, 2 threads", "kiln": "kiln"}
    print("| framework | s/epoch | inference img/s (batch 1000) | peak RSS MiB | test acc | kiln time / theirs | kiln img/s / theirs | kiln RSS / theirs |")
    print("|---|---|---|---|---|---|---|---|")
    k = results.get("kiln")
    for n, r in results.items():
        ratios = ("-", "-", "-")
        if k and n != "kiln":
            ratios = (f"{k['epoch_s'] / r['epoch_s']:.2f}x", f"{k['batch1000'] / r['batch1000']:.2f}x", f"{k['rss'] / r['rss']:.2f}x")
        print(f"| {label.get(n, n)} | {r['epoch_s']:.2f} | {r['batch1000']:.0f} | {r['rss']:.0f} | {r['test_acc']:.4f} | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
