"""Baselines for MovieLens-100K scored on exactly kiln's split: the run folder's split/train.tsv (what the models
train on), split/test.tsv (each user's held-out item, then its 99 sampled negatives, tab-separated) and split/valid.tsv (the
item before it, which the models do not train on but item-kNN counts in the user's history at test time, as
the two-tower model's history does).

- popularity: the number of training users who rated the item;
- item-kNN: cosine similarity of items over training users, each item's 100 nearest kept; a user's score for
  an item is the sum of its similarities to the user's items;
- implicit's ALS and BPR (implicit 0.7), 2 threads, each with the settings of a small grid that rank the
  validation items best (sampled HR@K), as kiln's runs pick their epoch on them.

Both protocols, with kiln's rules: the held-out item's rank counts the candidates scored at least as high
(ties against it); `sampled` ranks among its 99 negatives, `full` among every item the user has not rated.
With --kiln RUN_DIR ... the kiln runs' metrics.json are added to the table.

    .bench-venv/bin/python examples/movielens/baselines.py runs/ml-bpr [--kiln runs/ml-bpr runs/ml-ncf ...]
"""
import argparse
import itertools
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import implicit  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("run", help="a kiln run folder holding split/")
ap.add_argument("--kiln", nargs="*", default=[], help="kiln run folders whose metrics.json to list")
ap.add_argument("--k", type=int, default=10)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()


def read(name):
    rows = []
    with open(os.path.join(args.run, "split", name)) as f:
        next(f)
        for line in f:
            rows.append(line.rstrip("\n").split("\t"))
    return rows


train, valid, test = read("train.tsv"), read("valid.tsv"), read("test.tsv")
users = {u: i for i, u in enumerate(dict.fromkeys(r[0] for r in train + valid + test))}
items = {}
for r in train + valid + test:
    for it in r[1:]:
        items.setdefault(it, len(items))
nu, ni = len(users), len(items)
ui = sp.csr_matrix(
    (np.ones(len(train), dtype=np.float32), ([users[r[0]] for r in train], [items[r[1]] for r in train])),
    shape=(nu, ni),
)
ui.data[:] = 1.0
history = ui.tolil()
for r in valid:
    history[users[r[0]], items[r[1]]] = 1.0
history = history.tocsr()
rated = history.tolil()
for r in test:
    rated[users[r[0]], items[r[1]]] = 1.0
rated = rated.tocsr()
held = [(users[r[0]], items[r[1]], [items[x] for x in r[2:]]) for r in test]
held_valid = [(users[r[0]], items[r[1]], [items[x] for x in r[2:]]) for r in valid]


def popularity():
    pop = np.asarray(ui.sum(axis=0)).ravel()
    return lambda u: pop


def item_knn(neighbors=100):
    x = ui.T.tocsr().astype(np.float64)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    sim = (x @ x.T).toarray() / np.outer(norms, norms)
    np.fill_diagonal(sim, 0.0)
    keep = np.argpartition(-sim, neighbors, axis=1)[:, :neighbors]
    pruned = np.zeros_like(sim)
    rows = np.arange(ni)[:, None]
    pruned[rows, keep] = sim[rows, keep]
    return lambda u: history[u].toarray().ravel() @ pruned


def factor_model(model):
    t0 = time.perf_counter()
    model.fit(ui, show_progress=False)
    seconds = time.perf_counter() - t0
    uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return (lambda u: itf @ uf[u]), seconds


def score(scorer, held=held, protocols=("sampled", "full")):
    out = {}
    for protocol in protocols:
        hits = ndcg = mrr = 0.0
        shown = set()
        for u, item, negs in held:
            s = scorer(u)
            if protocol == "sampled":
                cand = np.array([item] + negs)
            else:
                seen = rated[u].indices
                mask = np.ones(ni, dtype=bool)
                mask[seen] = False
                mask[item] = False
                cand = np.concatenate([[item], np.nonzero(mask)[0]])
            cs = s[cand]
            rank = int(np.sum(cs[1:] >= cs[0]))
            if rank < args.k:
                hits += 1
                ndcg += 1 / np.log2(rank + 2)
            mrr += 1 / (rank + 1)
            top = cand[np.lexsort((np.arange(len(cs)), -cs))[: args.k]]
            shown.update(top.tolist())
        n = len(held)
        out[protocol] = {"hr": hits / n, "ndcg": ndcg / n, "mrr": mrr / n, "coverage": len(shown) / ni}
    return out


def tuned(name, make, grid):
    """The grid's settings that rank the validation items best, scored on the test items."""
    best = None
    for values in itertools.product(*grid.values()):
        kw = dict(zip(grid, values))
        scorer, _ = factor_model(make(**kw))
        hr = score(scorer, held_valid, ("sampled",))["sampled"]["hr"]
        if best is None or hr > best[0]:
            best = (hr, kw, scorer)
    hr, kw, scorer = best
    shown = ", ".join(f"{k} {v}" for k, v in kw.items())
    return (f"{name} ({shown}; validation HR@{args.k} {hr:.4f})", score(scorer), None)


rows = [("popularity", score(popularity()), None), ("item-kNN (100 neighbours)", score(item_knn()), None)]
rows.append(
    tuned(
        "implicit ALS",
        lambda **kw: implicit.cpu.als.AlternatingLeastSquares(num_threads=args.threads, random_state=args.seed, **kw),
        {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0], "alpha": [1.0, 10.0], "iterations": [15]},
    )
)
rows.append(
    tuned(
        "implicit BPR",
        lambda **kw: implicit.cpu.bpr.BayesianPersonalizedRanking(
            num_threads=args.threads, random_state=args.seed, **kw
        ),
        {"factors": [32, 64, 128], "learning_rate": [0.01, 0.05, 0.1], "regularization": [0.001, 0.01], "iterations": [100, 300]},
    )
)
for run in args.kiln:
    with open(os.path.join(run, "metrics.json")) as f:
        m = json.load(f)
    with open(os.path.join(run, "config.toml")) as f:
        kind = next((l.split("=")[1].strip().strip('"') for l in f if l.startswith("kind")), run)
    rows.append((f"kiln {kind} ({os.path.basename(run.rstrip('/'))})", m["test"], None))

k = args.k
print(f"MovieLens-100K, {len(held)} test users, {ni} items, leave-last-out; K = {k}\n")
print(f"| model | HR@{k} (sampled) | NDCG@{k} (sampled) | HR@{k} (full) | NDCG@{k} (full) | MRR (full) | coverage@{k} (full) |")
print("|---|---|---|---|---|---|---|")
for name, r, secs in rows:
    s, f = r["sampled"], r["full"]
    print(f"| {name} | {s['hr']:.4f} | {s['ndcg']:.4f} | {f['hr']:.4f} | {f['ndcg']:.4f} | {f['mrr']:.4f} | {f['coverage']:.4f} |")
