"""Sentence embedding speed, kiln next to sentence-transformers in one run (the issue's measure).

    python3 bench/embed_side_by_side.py [--texts 1000] [--short]

The first --texts non-empty reviews (--short: the first sentence of each) of data/womens-ecommerce-reviews, embedded by all-MiniLM-L6-v2
(models/, from tools/fetch_models.sh) at batch 32, all texts then each of 50 texts alone. sentence-transformers
(PyTorch, 2 threads) runs in .bench-venv (made by bench/side_by_side.py; `pip install sentence-transformers`
there); kiln's side is crates/kiln-bench/src/bin/embedbench.rs. Each side runs in its own process, so the peak
RSS is its own. Texts per second are the median of three passes; one-text latency the median of 50.
"""
import argparse
import csv
import gzip
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
VENV_PY = os.path.join(ROOT, ".bench-venv", "bin", "python")


def texts(n, short):
    path = os.path.join(ROOT, "data", "womens-ecommerce-reviews", "womens_clothing_reviews.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [r["Review Text"].replace("\n", " ").strip() for r in csv.DictReader(f)]
    if short:
        # The first sentence of each review: short texts, as questions to an FAQ are.
        rows = [r.split(". ")[0].strip() for r in rows]
    return [r for r in rows if r][:n]


def st_child(path):
    import resource

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(MODEL, device="cpu")
    lines = open(path, encoding="utf-8").read().split("\n")
    model.encode(lines[:64], batch_size=32)
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        model.encode(lines, batch_size=32)
        rates.append(len(lines) / (time.perf_counter() - t))
    one = []
    for s in lines[:50]:
        t = time.perf_counter()
        model.encode([s], batch_size=1)
        one.append((time.perf_counter() - t) * 1e3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"per_s": statistics.median(rates), "one_ms": statistics.median(one), "rss": rss}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--short", action="store_true", help="only the first sentence of each review")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        st_child(a.child)
        return
    if not os.path.isfile(os.path.join(MODEL, "model.safetensors")):
        sys.exit("error: models/all-MiniLM-L6-v2 is absent: run tools/fetch_models.sh")
    path = os.path.join(ROOT, "target", "embed_bench_texts.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts(a.texts, a.short)))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln-bench", "--bin", "embedbench"], cwd=ROOT, check=True)
    kind = "first sentences of reviews" if a.short else "review texts"
    print(f"all-MiniLM-L6-v2, {a.texts} {kind}, batch 32; one text alone: median of 50", file=sys.stderr)
    out = {}
    env = dict(os.environ, OMP_NUM_THREADS="2")
    print("running sentence-transformers...", file=sys.stderr)
    r = subprocess.run([VENV_PY, __file__, "--child", path], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"error: sentence-transformers: {r.stderr.strip()[-2000:]}")
    out["st"] = json.loads(r.stdout.strip().splitlines()[-1])
    print("running kiln...", file=sys.stderr)
    r = subprocess.run([os.path.join(ROOT, "target", "release", "embedbench"), MODEL, path], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: kiln: {r.stderr.strip()}")
    out["kiln"] = json.loads(r.stdout.strip().splitlines()[-1])
    k, s = out["kiln"], out["st"]
    print("| framework | texts/s (batch 32) | one text, ms | peak RSS MiB | kiln texts/s / theirs | kiln latency / theirs |")
    print("|---|---|---|---|---|---|")
    print(f"| sentence-transformers, PyTorch 2 threads | {s['per_s']:.0f} | {s['one_ms']:.2f} | {s['rss']:.0f} | {k['per_s'] / s['per_s']:.2f}x | {k['one_ms'] / s['one_ms']:.2f}x |")
    print(f"| kiln | {k['per_s']:.0f} | {k['one_ms']:.2f} | {k['rss']:.0f} | - | - |")


if __name__ == "__main__":
    main()
