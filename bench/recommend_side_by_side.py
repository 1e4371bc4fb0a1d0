"""BPR training speed, kiln against the `implicit` package, on MovieLens-100K in one run on this machine: the
same training interactions (a kiln run's split/train.tsv, leave-last-out), 64 factors, one sampled negative
per positive per epoch, the same number of epochs, the same thread count. Each side trains `--repeats` times;
the table gives the median seconds per epoch and the test ranking (sampled protocol, the run's candidates)
after those epochs.

kiln's BPR is minibatch Adam on its tape (batches of 256); implicit's is Hogwild SGD in Cython, one triple at
a time; so the two reach different accuracies after the same epochs, which the table shows beside the time.

    bash tools/fetch_models.sh && cargo build --release -p kiln-cli
    .bench-venv/bin/python bench/recommend_side_by_side.py [--epochs 30] [--threads 2] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=30)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--kiln", default="target/release/kiln")
args = ap.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import implicit  # noqa: E402

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data = os.path.join(root, "data", "ml-100k")
config = f"""
[data]
format = "interactions"
path = "{data}/ml-100k.inter"
timestamp = "timestamp"

[model]
kind = "bpr"
dim = 64
l2 = 0.01

[train]
epochs = {args.epochs}
batch_size = 256
validation_split = 0
negatives = 1
"""

work = tempfile.mkdtemp(prefix="kiln-bpr-bench-")
cfg = os.path.join(work, "bpr.toml")
with open(cfg, "w") as f:
    f.write(config)

kiln_rows = []
for r in range(args.repeats):
    run = os.path.join(work, f"run{r}")
    subprocess.run(
        [os.path.join(root, args.kiln), "--threads", str(args.threads), "train", cfg, "--run-dir", run, "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )
    with open(os.path.join(run, "metrics.json")) as f:
        m = json.load(f)
    kiln_rows.append((m["seconds_per_epoch"], m["test"]["sampled"]["hr"], m["test"]["sampled"]["ndcg"]))


def read(name):
    with open(os.path.join(work, "run0", "split", name)) as f:
        next(f)
        return [line.rstrip("\n").split("\t") for line in f]


train, test = read("train.tsv"), read("test.tsv")
users = {u: i for i, u in enumerate(dict.fromkeys(r[0] for r in train + test))}
items = {}
for r in train + test:
    for it in r[1:]:
        items.setdefault(it, len(items))
ui = sp.csr_matrix(
    (np.ones(len(train), dtype=np.float32), ([users[r[0]] for r in train], [items[r[1]] for r in train])),
    shape=(len(users), len(items)),
)
held = [(users[r[0]], [items[x] for x in r[1:]]) for r in test]

implicit_rows = []
for r in range(args.repeats):
    model = implicit.cpu.bpr.BayesianPersonalizedRanking(
        factors=64, learning_rate=0.01, regularization=0.01, iterations=args.epochs, num_threads=args.threads,
        random_state=r,
    )
    t0 = time.perf_counter()
    model.fit(ui, show_progress=False)
    secs = (time.perf_counter() - t0) / args.epochs
    uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)
    hits = ndcg = 0.0
    for u, cand in held:
        s = itf[cand] @ uf[u]
        rank = int(np.sum(s[1:] >= s[0]))
        if rank < 10:
            hits += 1
            ndcg += 1 / np.log2(rank + 2)
    implicit_rows.append((secs, hits / len(held), ndcg / len(held)))


def med(rows, i):
    return statistics.median(r[i] for r in rows)


k, i = med(kiln_rows, 0), med(implicit_rows, 0)
print(f"MovieLens-100K BPR, {ui.nnz} training interactions, 64 factors, {args.epochs} epochs, "
      f"{args.threads} threads, median of {args.repeats}\n")
print("| | s per epoch | HR@10 (sampled) | NDCG@10 (sampled) |")
print("|---|---|---|---|")
print(f"| kiln bpr (Adam, batches of 256) | {k:.4f} | {med(kiln_rows, 1):.4f} | {med(kiln_rows, 2):.4f} |")
print(f"| implicit BPR 0.7 (SGD, lr 0.01) | {i:.4f} | {med(implicit_rows, 1):.4f} | {med(implicit_rows, 2):.4f} |")
print(f"\nkiln's time per epoch / implicit's: {k / i:.2f}x")
