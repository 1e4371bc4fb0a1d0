"""Text models' training speed, kiln next to PyTorch in one run (the text row of the benchmark suite).

    python3 bench/text_side_by_side.py [--epochs 2] [--models lstm,transformer]

Same shapes in both (kiln's crates/kiln-bench/src/bin/textbench.rs): 20,000 synthetic sequences of 100 term ids
(vocabulary 20,000, a third of each row padding on average), batch 64, Adam, binary cross-entropy; an
embedding bag (mean of 64-wide vectors, padding excluded → Dense 32 ReLU → 1), the same bag updating only the
table rows a batch uses (PyTorch: sparse=True and SparseAdam; kiln: Adam with lazy = true), an LSTM and a GRU
(Embedding 64, padding masked via packed sequences → LSTM or GRU 32 → 1), and a transformer (Embedding 64 +
learned positions → 2 pre-norm GELU encoder blocks of 4 heads, feed-forward 128, dropout 0.1, padding masked as
keys → LayerNorm → mean over the real steps → 1; PyTorch: nn.TransformerEncoder). PyTorch runs with 1 and with 2 threads, in .bench-venv
(made by bench/side_by_side.py). Seconds per epoch are medians over --epochs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
N, LEN, VOCAB = 20_000, 100, 20_000


ALL = ["embedding_bag", "embedding_bag_sparse", "lstm", "gru", "transformer"]


def torch_child(threads, epochs, models):
    import numpy as np
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    lens = rng.integers(LEN // 3, LEN + 1, N)
    ids = (2 + (rng.random((N, LEN)) ** 3) * (VOCAB - 2)).astype(np.int64)
    ids[np.arange(LEN)[None, :] >= lens[:, None]] = 0
    y = torch.from_numpy((rng.random(N) < 0.5).astype(np.float32))[:, None]
    x, lens = torch.from_numpy(ids), torch.from_numpy(lens)

    class Bag(nn.Module):
        def __init__(self, sparse=False):
            super().__init__()
            self.e = nn.EmbeddingBag(VOCAB, 64, mode="mean", padding_idx=0, sparse=sparse)
            self.d = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))

        def forward(self, x, lens):
            return self.d(self.e(x))

    class Rnn(nn.Module):
        def __init__(self, gru):
            super().__init__()
            self.gru = gru
            self.e = nn.Embedding(VOCAB, 64, padding_idx=0)
            self.l = nn.GRU(64, 32, batch_first=True) if gru else nn.LSTM(64, 32, batch_first=True)
            self.d = nn.Linear(32, 1)

        def forward(self, x, lens):
            p = nn.utils.rnn.pack_padded_sequence(self.e(x), lens, batch_first=True, enforce_sorted=False)
            state = self.l(p)[1]
            return self.d(state[0] if self.gru else state[0][0])

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.e = nn.Embedding(VOCAB, 64, padding_idx=0)
            self.pos = nn.Parameter(torch.randn(LEN, 64) * 0.05)
            block = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.enc = nn.TransformerEncoder(block, 2, norm=nn.LayerNorm(64), enable_nested_tensor=False)
            self.d = nn.Linear(64, 1)

        def forward(self, x, lens):
            pad = x == 0
            h = self.enc(self.e(x) + self.pos, src_key_padding_mask=pad)
            keep = (~pad).unsqueeze(-1).float()
            return self.d((h * keep).sum(1) / keep.sum(1))

    out = {}
    for name, model in [("embedding_bag", Bag()), ("embedding_bag_sparse", Bag(True)), ("lstm", Rnn(False)),
                        ("gru", Rnn(True)), ("transformer", Transformer())]:
        if name not in models:
            continue
        if name.endswith("sparse"):
            # Sparse gradients for the table (SparseAdam: only the rows used are updated), Adam for the rest.
            dense = [p for n, p in model.named_parameters() if not n.startswith("e.")]
            opts = [torch.optim.SparseAdam(list(model.e.parameters()), lr=1e-3, eps=1e-7),
                    torch.optim.Adam(dense, lr=1e-3, eps=1e-7)]
        else:
            opts = [torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)]
        loss_fn = nn.BCEWithLogitsLoss()
        times = []
        for _ in range(epochs):
            t = time.perf_counter()
            perm = torch.randperm(N)
            for i in range(0, N, 64):
                idx = perm[i:i + 64]
                for opt in opts:
                    opt.zero_grad()
                loss_fn(model(x[idx], lens[idx]), y[idx]).backward()
                for opt in opts:
                    opt.step()
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", default=",".join(ALL), help="comma-separated, of: " + ", ".join(ALL))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    models = [m for m in ALL if m in a.models.split(",")]
    if a.child:
        return torch_child(a.child, a.epochs, models)
    py = os.path.join(ROOT, ".bench-venv", "bin", "python")
    if not os.path.exists(py):
        sys.exit("run bench/side_by_side.py once first: it creates .bench-venv with torch")
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "kiln-bench", "--bin", "textbench"], cwd=ROOT)
    out = subprocess.run([os.path.join(ROOT, "target", "release", "textbench"), "--epochs", str(a.epochs),
                          "--models", ",".join(models)],
                         capture_output=True, text=True, check=True).stdout
    kiln = {r["model"]: r["epoch_s"] for r in map(json.loads, out.strip().splitlines())}
    results = {"kiln": kiln}
    for t in (1, 2):
        o = subprocess.run([py, os.path.abspath(__file__), "--child", str(t), "--epochs", str(a.epochs),
                            "--models", ",".join(models)],
                           capture_output=True, text=True, check=True)
        results[f"PyTorch, {t} thread{'s' if t > 1 else ''}"] = json.loads(o.stdout.strip().splitlines()[-1])
    print(f"20,000 sequences of 100 ids, batch 64, Adam; seconds per epoch, median of {a.epochs}\n")
    titles = {"embedding_bag": "embedding bag", "embedding_bag_sparse": "bag, sparse rows", "lstm": "LSTM",
              "gru": "GRU", "transformer": "transformer"}
    print("| framework | " + " | ".join(f"{titles[m]} s/epoch" for m in models) +
          f" | kiln time / theirs ({', '.join(titles[m] for m in models)}) |")
    print("|---" * (len(models) + 2) + "|")
    for name, r in results.items():
        ratio = "-" if name == "kiln" else ", ".join(f"{kiln[m] / r[m]:.2f}x" for m in models)
        print(f"| {name} | " + " | ".join(f"{r[m]:.2f}" for m in models) + f" | {ratio} |")


if __name__ == "__main__":
    main()
