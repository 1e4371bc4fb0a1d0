"""Load test of `kiln serve` on loopback with wrk: requests/s and p50/p99 latency for the MNIST CNN and the
adult table model, one instance per request, at 1, 16 and 64 connections, with dynamic batching on (the
default) and off (--max-batch 1), in one run.

    python3 bench/serve_load.py [--seconds 5] [--mnist MODEL] [--adult MODEL]

Without --mnist/--adult it trains both first (MNIST 1 epoch, adult 3 epochs) into runs/serve-bench-*.
Needs wrk (Debian: apt-get install wrk) and target/release/kiln (cargo build --release -p kiln-cli). wrk
and the server share this machine's cores, as a load test on loopback does.

The issue's peer (the same models exported to ONNX, served by onnxruntime behind FastAPI/uvicorn) is not
run: kiln cannot export ONNX yet.
"""
import argparse
import base64
import gzip
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
KILN = os.path.join(ROOT, "target", "release", "kiln")


def train(config, run_dir, epochs):
    if os.path.exists(os.path.join(run_dir, "model.safetensors")):
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    subprocess.check_call([KILN, "train", config, "--epochs", str(epochs), "--run-dir", run_dir, "--quiet"],
                          stdout=subprocess.DEVNULL)
    return run_dir


def digit_png():
    """An MNIST test digit as a base64 PNG (the first image of the test file)."""
    import struct
    import zlib

    with gzip.open(os.path.join(ROOT, "data", "mnist", "t10k-images-idx3-ubyte.gz"), "rb") as f:
        f.read(16)
        px = f.read(784)
    raw = b"".join(b"\x00" + px[r * 28:(r + 1) * 28] for r in range(28))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def adult_row():
    with gzip.open(os.path.join(ROOT, "data", "adult", "adult.csv.gz"), "rt") as f:
        row = next(csv.DictReader(f))
    row.pop("income", None)
    return {k: (v if v != "?" else None) for k, v in row.items()}


def serve(models, extra):
    args = [KILN, "serve", *models, "--port", "0", *extra]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.search(r"http://(\S+)", line)
    if not m:
        p.kill()
        sys.exit(f"kiln serve did not start: {line!r}")
    return p, m.group(1)


def wrk(url, body, connections, seconds, tmp):
    script = os.path.join(tmp, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = " + json.dumps(body) + "\n")
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\b", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    time.sleep(0.5)  # requests wrk left unanswered at its end drain before the next cell
    return rps, ms("50"), ms("99"), int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--mnist")
    ap.add_argument("--adult")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")
    mnist = a.mnist or train(os.path.join(ROOT, "examples", "mnist", "mnist.toml"),
                             os.path.join(ROOT, "runs", "serve-bench-mnist"), 1)
    adult = a.adult or train(os.path.join(ROOT, "examples", "adult", "adult.toml"),
                             os.path.join(ROOT, "runs", "serve-bench-adult"), 3)
    bodies = {
        "mnist": json.dumps({"instances": [{"b64": digit_png()}]}),
        "adult": json.dumps({"instances": [adult_row()]}),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batching, extra in [("on", []), ("off", ["--max-batch", "1"])]:
            p, addr = serve([f"mnist={mnist}", f"adult={adult}"], extra)
            try:
                for name in ["mnist", "adult"]:
                    url = f"http://{addr}/v1/models/{name}/predict"
                    wrk(url, bodies[name], 4, 1, tmp)  # warm up
                    for c in [1, 16, 64]:
                        rps, p50, p99, failed = wrk(url, bodies[name], c, a.seconds, tmp)
                        rows.append((name, batching, c, rps, p50, p99, failed))
                        print(f"  {name} batching {batching}, {c} connections: {rps:,.0f} req/s", file=sys.stderr)
            finally:
                p.terminate()
                p.wait()
    print(f"\nkiln serve on loopback, wrk {a.seconds} s per cell, one instance per request\n")
    print("| model | batching | connections | requests/s | p50 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|")
    for name, b, c, rps, p50, p99, failed in rows:
        print(f"| {name} | {b} | {c} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {failed} |")
    print("\nPeer (onnxruntime behind FastAPI/uvicorn): not run, kiln has no ONNX export yet.")


if __name__ == "__main__":
    main()
