"""Load test of `kiln serve` on loopback with wrk: requests/s and p50/p99 latency for the MNIST CNN and the
adult table model, one instance per request, at 1, 16 and 64 connections, with dynamic batching on (the
default) and off (--max-batch 1), in one run.

    python3 bench/serve_load.py [--seconds 5] [--mnist MODEL] [--adult MODEL]

Without --mnist/--adult it trains both first (MNIST 1 epoch, adult 3 epochs) into runs/serve-bench-*.
Needs wrk (Debian: apt-get install wrk) and target/release/kiln (cargo build --release -p kiln-cli). wrk
and the server share this machine's cores, as a load test on loopback does.

The peer, in the same run: the same models exported to ONNX (`kiln export --format onnx`) and served by
onnxruntime behind FastAPI on uvicorn with 2 workers (bench/onnx_peer.py; `pip install onnxruntime fastapi
uvicorn pillow numpy`, run with this Python, or --python). Its table rows come prepared (by
target/release/prepared, cargo build --release -p kiln-bench), which spares it the preparation kiln does.
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


def adult_csv(tmp):
    """The adult file's header and first row, as a CSV for target/release/prepared."""
    path = os.path.join(tmp, "adult_row.csv")
    with gzip.open(os.path.join(ROOT, "data", "adult", "adult.csv.gz"), "rt") as f, open(path, "w") as out:
        out.write(f.readline())
        out.write(f.readline())
    return path


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


def peer(python, models, tmp):
    """Starts bench/onnx_peer.py under uvicorn (2 workers) on a free port; returns the process and address."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, KILN_PEER_MODELS=",".join(f"{n}={p}" for n, p in models.items()))
    args = [python, "-m", "uvicorn", "--app-dir", os.path.join(ROOT, "bench"), "onnx_peer:app", "--workers", "2",
            "--port", str(port), "--log-level", "warning", "--no-access-log", "--http", "httptools",
            "--loop", "uvloop"]
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "peer.log"), "w"))
    addr = f"127.0.0.1:{port}"
    import urllib.request

    for _ in range(100):
        time.sleep(0.2)
        try:
            urllib.request.urlopen(f"http://{addr}/docs", timeout=1)
            return p, addr
        except OSError:
            if p.poll() is not None:
                break
    p.kill()
    sys.exit("the ONNX peer did not start: " + open(os.path.join(tmp, "peer.log")).read()[-2000:])


def post(url, body):
    import urllib.request

    req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--python", default=sys.executable, help="the Python with onnxruntime, fastapi and uvicorn")
    ap.add_argument("--no-peer", action="store_true")
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

    def load(server, addr, body_of):
        for name in ["mnist", "adult"]:
            url = f"http://{addr}/v1/models/{name}/predict"
            wrk(url, body_of[name], 4, 1, tmp)  # warm up
            for c in [1, 16, 64]:
                rps, p50, p99, failed = wrk(url, body_of[name], c, a.seconds, tmp)
                rows.append((name, server, c, rps, p50, p99, failed))
                print(f"  {name} {server}, {c} connections: {rps:,.0f} req/s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        answers = {}
        for batching, extra in [("on", []), ("off", ["--max-batch", "1"])]:
            p, addr = serve([f"mnist={mnist}", f"adult={adult}"], extra)
            try:
                for name in ["mnist", "adult"]:
                    answers[name] = post(f"http://{addr}/v1/models/{name}/predict", bodies[name])
                load(f"kiln, batching {batching}", addr, bodies)
            finally:
                p.terminate()
                p.wait()
        if not a.no_peer:
            onnx = {}
            for name, model in [("mnist", mnist), ("adult", adult)]:
                onnx[name] = os.path.join(tmp, f"{name}.onnx")
                subprocess.check_call([KILN, "export", model, "--format", "onnx", "--output", onnx[name]],
                                      stdout=subprocess.DEVNULL)
            prepared = subprocess.check_output([os.path.join(ROOT, "target", "release", "prepared"),
                                                os.path.join(adult, "model.safetensors") if os.path.isdir(adult)
                                                else adult, adult_csv(tmp)], text=True)
            peer_bodies = {"mnist": bodies["mnist"], "adult": json.dumps({"instances": json.loads(prepared)})}
            p, addr = peer(a.python, onnx, tmp)
            try:
                # The same answers as kiln's, so the two serve the same model.
                for name in ["mnist", "adult"]:
                    got = post(f"http://{addr}/v1/models/{name}/predict", peer_bodies[name])
                    print(f"  {name}: kiln {answers[name]}\n  {name}: peer {got}", file=sys.stderr)
                load("onnxruntime + FastAPI (2 workers)", addr, peer_bodies)
            finally:
                p.terminate()
                p.wait()
    print(f"\nOn loopback, wrk {a.seconds} s per cell, one instance per request\n")
    print("| model | server | connections | requests/s | p50 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|")
    for name, server, c, rps, p50, p99, failed in rows:
        print(f"| {name} | {server} | {c} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {failed} |")
    cell = {(r[0], r[1], r[2]): r for r in rows}
    peers = [r for r in rows if r[1].startswith("onnxruntime")]
    if peers:
        print("\n| model | connections | kiln req/s ÷ peer | kiln p99 ÷ peer |")
        print("|---|---|---|---|")
        for name, server, c, rps, _, p99, _ in peers:
            k = cell[(name, "kiln, batching on", c)]
            print(f"| {name} | {c} | {k[3] / rps:.1f}x | {k[5] / p99:.2f}x |")


if __name__ == "__main__":
    main()
