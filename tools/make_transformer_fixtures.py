"""PyTorch references for kiln's attention layers: Embedding(mask_zero) -> PositionEmbedding -> MultiHeadAttention
(nn.MultiheadAttention with a key padding mask, and causal) and -> TransformerEncoder (nn.TransformerEncoderLayer,
post-norm ReLU and pre-norm GELU after a LayerNormalization), on a batch with one padded sequence. Each fixture
holds the ids, every weight in kiln's order and layout (kernels [in, out], PyTorch's transposed), the output at
every step, and the gradient of sum(y * R) for every weight, R zero at padded steps.

    .bench-venv/bin/python tools/make_transformer_fixtures.py     # needs torch

Also ColumnTokens, the FT-Transformer's tokens of a table row (Gorishniy et al. 2021; the periodic number
encoding of Gorishniy et al. 2022), transcribed from the papers' formulas: column_tokens.json.

Writes crates/kiln/tests/fixtures/transformer/*.json, read by crates/kiln/tests/suite/transformer.rs.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "fixtures", "transformer")
VOCAB, STEPS, D, HEADS, FF = 7, 5, 8, 2, 16
IDS = torch.tensor([[1, 2, 3, 4, 5], [6, 2, 3, 0, 0]])
PAD = IDS == 0


def sinusoidal(steps, d):
    pe = torch.zeros(steps, d)
    pos = torch.arange(steps).unsqueeze(1).double()
    div = torch.exp(torch.arange(0, d, 2).double() * (-math.log(10000.0) / d))
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


def leaf(*shape, scale=0.5):
    return (torch.randn(*shape) * scale).requires_grad_(True)


def attention_weights(prefix, mha):
    """nn.MultiheadAttention's parameters as kiln's: query, key, value and output kernels [in, out] and biases."""
    w, b = mha.in_proj_weight, mha.in_proj_bias
    out = []
    for k, part in enumerate(["query", "key", "value"]):
        out += [(f"{prefix}{part}_kernel", w[k * D:(k + 1) * D].t()), (f"{prefix}{part}_bias", b[k * D:(k + 1) * D])]
    out += [(f"{prefix}output_kernel", mha.out_proj.weight.t()), (f"{prefix}output_bias", mha.out_proj.bias)]
    return out


def randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.4)


def save(name, weights, y, R, extra):
    """weights: (name, kiln-layout tensor view) in kiln's order; the gradients are read through the views."""
    (y * R).sum().backward()
    out = {"torch": torch.__version__, "ids": IDS.tolist(), "y": y.tolist(), "R": R.tolist(), **extra,
           "weights": [{"name": n, "value": t.detach().tolist(), "grad": None} for n, t in weights]}
    os.makedirs(OUT, exist_ok=True)
    return out, os.path.join(OUT, name)


def write(out, path, weights):
    for entry, (_, t) in zip(out["weights"], weights):
        entry["grad"] = t.grad.tolist() if t.grad is not None else None
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", os.path.normpath(path))


def run(name, make_layer, kiln_layer, positions, layer_norm=False):
    """ids -> E -> + positions -> [LayerNorm(eps 1e-3)] -> layer; y at every step."""
    torch.manual_seed(sum(map(ord, name)))
    E = leaf(VOCAB, D)
    P = leaf(STEPS, D) if positions == "learned" else None
    ln = (leaf(D, scale=0.3), leaf(D, scale=0.3)) if layer_norm else None
    layer = make_layer()
    randomize(layer)
    layer.train()  # no fast path; dropout is 0
    x = E[IDS] + (P if P is not None else sinusoidal(STEPS, D))
    if ln is not None:
        with torch.no_grad():
            ln[0].add_(1.0)
        x = F.layer_norm(x, (D,), ln[0], ln[1], eps=1e-3)
    y = kiln_layer(layer, x)
    R = torch.randn(y.shape) * (~PAD).unsqueeze(-1)
    # Kernels are leaves of their own (transposed copies), so their gradients arrive in kiln's layout.
    params = dict(layer_params(layer))
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
    y = kiln_layer(layer, x, leaves)
    weights = [("E", E)] + ([("P", P)] if P is not None else []) + (
        [("ln_gamma", ln[0]), ("ln_beta", ln[1])] if ln else []) + list(leaves.items())
    out, path = save(name, weights, y, R, {"positions": positions, "layer_norm": layer_norm})
    write(out, path, weights)


def layer_params(layer):
    if isinstance(layer, torch.nn.MultiheadAttention):
        return attention_weights("", layer)
    return attention_weights("attention_", layer.self_attn) + [
        ("norm1_gamma", layer.norm1.weight), ("norm1_beta", layer.norm1.bias),
        ("ff1_kernel", layer.linear1.weight.t()), ("ff1_bias", layer.linear1.bias),
        ("ff2_kernel", layer.linear2.weight.t()), ("ff2_bias", layer.linear2.bias),
        ("norm2_gamma", layer.norm2.weight), ("norm2_beta", layer.norm2.bias)]


def torch_params(layer, leaves):
    """The module's parameters rebuilt from kiln-layout leaves, for functional_call."""
    if isinstance(layer, torch.nn.MultiheadAttention):
        prefix, names = "", {}
    else:
        prefix = "self_attn."
        names = {"norm1.weight": leaves["norm1_gamma"], "norm1.bias": leaves["norm1_beta"],
                 "linear1.weight": leaves["ff1_kernel"].t(), "linear1.bias": leaves["ff1_bias"],
                 "linear2.weight": leaves["ff2_kernel"].t(), "linear2.bias": leaves["ff2_bias"],
                 "norm2.weight": leaves["norm2_gamma"], "norm2.bias": leaves["norm2_beta"]}
    a = "" if prefix == "" else "attention_"
    names[prefix + "in_proj_weight"] = torch.cat([leaves[f"{a}{p}_kernel"].t() for p in ["query", "key", "value"]])
    names[prefix + "in_proj_bias"] = torch.cat([leaves[f"{a}{p}_bias"] for p in ["query", "key", "value"]])
    names[prefix + "out_proj.weight"] = leaves[f"{a}output_kernel"].t()
    names[prefix + "out_proj.bias"] = leaves[f"{a}output_bias"]
    return names


def mha(causal):
    def call(layer, x, leaves=None):
        mask = torch.triu(torch.ones(STEPS, STEPS, dtype=torch.bool), 1) if causal else None
        args = (x, x, x)
        kw = {"key_padding_mask": PAD, "attn_mask": mask, "need_weights": False}
        if leaves is None:
            return layer(*args, **kw)[0]
        return torch.func.functional_call(layer, torch_params(layer, leaves), args, kw)[0]
    return call


def encoder(layer, x, leaves=None):
    kw = {"src_key_padding_mask": PAD}
    if leaves is None:
        return layer(x, **kw)
    return torch.func.functional_call(layer, torch_params(layer, leaves), (x,), kw)


def make_encoder(norm_first, activation):
    return lambda: torch.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, activation=activation,
                                                    batch_first=True, norm_first=norm_first)


make_mha = lambda: torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
run("mha.json", make_mha, mha(False), "learned")
run("mha_causal.json", make_mha, mha(True), "sinusoidal")
run("encoder_post_relu.json", make_encoder(False, "relu"), encoder, "sinusoidal")
run("encoder_pre_gelu.json", make_encoder(True, "gelu"), encoder, "learned", layer_norm=True)


def column_tokens():
    """Rows of [a number and its missing indicator (linear), a number and its indicator (periodic), a one-hot
    category of 3, a boolean] -> one token per column, the [CLS] token first. Weights in kiln's order: per
    column its frequencies (periodic only), kernel [in, d] and bias [d]; then cls [d]."""
    torch.manual_seed(2021)
    widths, periodic, k, d = [2, 2, 3, 1], [False, True, False, False], 3, 4
    x = torch.tensor([[0.5, 0.0, -1.2, 0.0, 1, 0, 0, 1],
                      [-0.3, 1.0, 0.7, 0.0, 0, 0, 1, 0],
                      [1.9, 0.0, 0.1, 1.0, 0, 1, 0, 1]])
    weights = []
    for j, (w, p) in enumerate(zip(widths, periodic)):
        if p:
            weights.append((f"frequencies_{j}", leaf(k)))
        weights += [(f"kernel_{j}", leaf(w - 1 + 2 * k if p else w, d)), (f"bias_{j}", leaf(d))]
    weights.append(("cls", leaf(d)))
    p_ = dict(weights)
    tokens, off = [p_["cls"].expand(x.shape[0], 1, d)], 0
    for j, (w, p) in enumerate(zip(widths, periodic)):
        part = x[:, off:off + w]
        off += w
        if p:
            angle = 2 * math.pi * part[:, :1] * p_[f"frequencies_{j}"]
            v = torch.cat([torch.sin(angle), torch.cos(angle), part[:, 1:]], 1)
            t = torch.relu(v @ p_[f"kernel_{j}"] + p_[f"bias_{j}"])
        else:
            t = part @ p_[f"kernel_{j}"] + p_[f"bias_{j}"]
        tokens.append(t.unsqueeze(1))
    y = torch.cat(tokens, 1)
    R = torch.randn(y.shape)
    out, path = save("column_tokens.json", weights, y, R,
                     {"x": x.tolist(), "widths": widths, "periodic": periodic, "frequencies": k, "dim": d})
    write(out, path, weights)


column_tokens()
