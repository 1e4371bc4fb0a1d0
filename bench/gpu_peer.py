"""The PyTorch peer of gpubench (tools/gpu_check.sh): the seed's MNIST CNN (Conv2d 32 3x3 relu, MaxPool 2,
Linear 128 relu, Dropout 0.5, Linear 10, softmax cross-entropy), Adam (lr 1e-3), batch 64, one epoch on the
60,000 training images in eager mode on the GPU, then test accuracy and inference images/s at batch 1000.
Prints one JSON line. Usage: python3 bench/gpu_peer.py [--epochs N] [--data DIR]
"""

import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "mnist"))
    a = ap.parse_args()
    dev = torch.device("cuda")
    load = lambda name: idx(os.path.join(a.data, name))
    xtr = torch.tensor(load("train-images-idx3-ubyte.gz"), dtype=torch.float32).div(255).unsqueeze(1).to(dev)
    ytr = torch.tensor(load("train-labels-idx1-ubyte.gz"), dtype=torch.long).to(dev)
    xte = torch.tensor(load("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div(255).unsqueeze(1).to(dev)
    yte = torch.tensor(load("t10k-labels-idx1-ubyte.gz"), dtype=torch.long).to(dev)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    secs = []
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], device=dev)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, xtr.shape[0], 64):
            b = perm[i : i + 64]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[b]), ytr[b])
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        secs.append(time.perf_counter() - t)
    model.eval()
    rates = []
    with torch.no_grad():
        for _ in range(5):
            torch.cuda.synchronize()
            t = time.perf_counter()
            pred = torch.cat([model(xte[i : i + 1000]).argmax(1) for i in range(0, xte.shape[0], 1000)])
            torch.cuda.synchronize()
            rates.append(xte.shape[0] / (time.perf_counter() - t))
    acc = (pred == yte).float().mean().item()
    print(json.dumps({"peer": "pytorch " + torch.__version__, "gpu": torch.cuda.get_device_name(),
                      "epoch_s": sorted(secs)[len(secs) // 2], "test_acc": acc,
                      "batch1000_img_s": sorted(rates)[2]}))


if __name__ == "__main__":
    main()
