"""A PyTorch model's weights in a safetensors file, with PyTorch's outputs, for kiln's load-by-name test.

Run from the repository root:
    .bench-venv/bin/python tools/make_torch_weights_fixture.py
(needs `pip install torch safetensors numpy`).

Writes crates/kiln/tests/fixtures/torch_weights/{model.safetensors,expected.json}, read by
crates/kiln/tests/suite/load_weights.rs. The model has two inputs, to cover the layouts kiln must convert:
  image [N, 2, 4, 4] -> Conv2d(2, 3, 3) -> BatchNorm2d(3) (eval, with set running statistics) -> ReLU
        -> MaxPool2d(2) -> flatten (1x1x3, so channel order is the same in NCHW and NHWC)
  id [N] -> Embedding(10, 4)
  concat(image features, id vector) -> Linear(7, 5) -> ReLU -> Linear(5, 2)
The file is written by `safetensors.torch.save_file(model.state_dict())`, so it holds PyTorch's own names
and layouts (Linear [out, in], Conv2d [out, in, kh, kw]) and BatchNorm's int64 `num_batches_tracked`,
which kiln must leave unused. Outputs are computed in float32 in eval mode.
"""
import json
import os

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "crates", "kiln", "tests", "fixtures", "torch_weights")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.pool = nn.MaxPool2d(2)
        self.emb = nn.Embedding(10, 4)
        self.fc1 = nn.Linear(7, 5)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, image, ids):
        h = self.pool(torch.relu(self.bn(self.conv(image)))).flatten(1)
        return self.fc2(torch.relu(self.fc1(torch.cat([h, self.emb(ids)], 1))))


def main():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.copy_(torch.randn(3) * 0.1)
        net.bn.running_var.copy_(torch.rand(3) + 0.5)
        net.bn.weight.copy_(torch.rand(3) + 0.5)
        net.bn.bias.copy_(torch.randn(3) * 0.1)
    net.eval()
    n = 6
    image = torch.randn(n, 2, 4, 4)
    ids = torch.tensor([0, 3, 9, 1, 3, 7])
    with torch.no_grad():
        out = net(image, ids)
    os.makedirs(OUT, exist_ok=True)
    safetensors.torch.save_file(net.state_dict(), os.path.join(OUT, "model.safetensors"))
    expected = {
        "meta": f"torch {torch.__version__}, safetensors {safetensors.__version__}; see tools/make_torch_weights_fixture.py",
        "image_nhwc": image.permute(0, 2, 3, 1).reshape(n, -1).tolist(),
        "ids": ids.tolist(),
        "bn_eps": net.bn.eps,
        "output": out.tolist(),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
