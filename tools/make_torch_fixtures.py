"""Reference values for kiln's key ops, computed by PyTorch, written as JSON fixtures.

Run:  python3 tools/make_torch_fixtures.py   (needs `pip install torch numpy`)
Writes crates/kiln-core/tests/fixtures/torch/*.json, read by crates/kiln-core/tests/suite/torch_fixtures.rs.

Every fixture holds the inputs, the forward output, and the gradients of L = sum(y * r) for a fixed random r,
all in kiln's layouts: images NHWC, conv kernels [kh, kw, c_in, c_out] (Keras), dense kernels [in, out].
PyTorch computes in NCHW with its own kernel layouts; the conversions below are the point of the check.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln-core", "tests", "fixtures", "torch")


def t(x):
    return {"shape": list(x.shape), "data": [float(v) for v in x.detach().reshape(-1).tolist()]}


def save(name, **tensors):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump({k: t(v) for k, v in tensors.items()}, f)


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def dense():
    x, w, b = leaf(4, 5), leaf(5, 3), leaf(3)
    # torch.nn.Linear keeps weight as [out, in]; kiln (and Keras) as [in, out].
    y = F.relu(F.linear(x, w.t(), b))
    r = torch.rand_like(y)
    (y * r).sum().backward()
    save("dense_relu", x=x, w=w, b=b, y=y, r=r, dx=x.grad, dw=w.grad, db=b.grad)


def conv(name, n, h, wd, c, f, stride, same):
    x = leaf(n, h, wd, c)  # NHWC
    w = leaf(3, 3, c, f, scale=0.5)  # [kh, kw, c_in, c_out]
    b = leaf(f)
    xt = x.permute(0, 3, 1, 2)  # NCHW
    wt = w.permute(3, 2, 0, 1)  # [c_out, c_in, kh, kw]
    if same:
        # TensorFlow's "same": output = ceil(in / stride), extra padding on the bottom/right.
        def pads(size):
            out = -(-size // stride)
            total = max((out - 1) * stride + 3 - size, 0)
            return total // 2, total - total // 2

        (top, bottom), (left, right) = pads(h), pads(wd)
        xt = F.pad(xt, (left, right, top, bottom))
    y = F.conv2d(xt, wt, b, stride=stride).permute(0, 2, 3, 1)  # back to NHWC
    r = torch.rand_like(y)
    (y * r).sum().backward()
    save(name, x=x, w=w, b=b, y=y, r=r, dx=x.grad, dw=w.grad, db=b.grad)


def max_pool(name, n, h, wd, c, k, stride, same):
    x = leaf(n, h, wd, c)
    xt = x.permute(0, 3, 1, 2)
    if same:
        def pads(size):
            out = -(-size // stride)
            total = max((out - 1) * stride + k - size, 0)
            return total // 2, total - total // 2

        (top, bottom), (left, right) = pads(h), pads(wd)
        xt = F.pad(xt, (left, right, top, bottom), value=float("-inf"))
    y = F.max_pool2d(xt, k, stride).permute(0, 2, 3, 1)
    r = torch.rand_like(y)
    (y * r).sum().backward()
    save(name, x=x, y=y, r=r, dx=x.grad)


def softmax_cross_entropy():
    z = leaf(6, 5, scale=2.0)
    labels = torch.tensor([0, 3, 4, 1, 1, 2])
    target = F.one_hot(labels, 5).to(torch.float64)
    loss = F.cross_entropy(z, labels)  # mean over the batch, as Keras's categorical cross-entropy
    loss.backward()
    save("softmax_cross_entropy", logits=z, target=target, loss=loss.reshape(1), dlogits=z.grad)


dense()
conv("conv2d_valid", 2, 7, 6, 3, 4, 1, False)
conv("conv2d_same_stride2", 2, 7, 6, 3, 4, 2, True)
max_pool("max_pool_2x2", 2, 6, 6, 3, 2, 2, False)
max_pool("max_pool_3x3_same_stride2", 2, 6, 5, 2, 3, 2, True)
softmax_cross_entropy()
print("wrote fixtures to", os.path.normpath(OUT))
