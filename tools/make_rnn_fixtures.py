"""PyTorch references for kiln's Embedding(mask_zero) -> LSTM and -> GRU: the last state of each sequence and the
gradients of sum(h * R) for fixed weights, with one sequence padded (PyTorch: pack_padded_sequence). Writes
crates/kiln/tests/fixtures/lstm.json, gru.json, simple_rnn.json and bilstm.json (bidirectional LSTM); and
for Conv1D + GlobalMaxPooling1D, conv1d.json.

    python3 tools/make_rnn_fixtures.py     # needs torch
"""
import json
import os

import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "fixtures")


def save(name, out):
    path = os.path.join(FIXTURES, name)
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", os.path.normpath(path))


def cell_fixture(W, U, b, R, h):
    """One recurrent cell's fixture: the inputs, its weights, the last states and every gradient."""
    return {
        "torch": torch.__version__, "ids": ids.tolist(), "E": E.tolist(), "W": W.tolist(), "U": U.tolist(),
        "b": b.tolist(), "R": R.tolist(), "h": h.tolist(),
        "dE": E.grad.tolist(), "dW": W.grad.tolist(), "dU": U.grad.tolist(), "db": b.grad.tolist(),
    }


torch.manual_seed(0)
vocab, dim, units = 7, 3, 4
ids = torch.tensor([[1, 2, 3, 4, 5], [6, 2, 0, 0, 0]])
lengths = torch.tensor([5, 2])
E = torch.randn(vocab, dim) * 0.5
W = torch.randn(dim, 4 * units) * 0.5   # Keras layout: kernel [features, 4 units], gates i, f, c, o
U = torch.randn(units, 4 * units) * 0.5
b = torch.randn(4 * units) * 0.1
R = torch.randn(2, units)
E, W, U, b = (t.clone().requires_grad_(True) for t in (E, W, U, b))

lstm = torch.nn.LSTM(dim, units, batch_first=True)
with torch.no_grad():
    lstm.bias_hh_l0.zero_()
emb = E[ids]
packed = torch.nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
# PyTorch's weights are the transposes of Keras's; the gate order (i, f, g, o) is the same.
_, (h, _) = torch.func.functional_call(
    lstm, {"weight_ih_l0": W.t(), "weight_hh_l0": U.t(), "bias_ih_l0": b, "bias_hh_l0": torch.zeros(4 * units)},
    (packed,))
h = h[0]
(h * R).sum().backward()
save("lstm.json", cell_fixture(W, U, b, R, h))

# GRU: Keras layout (kernel [features, 3 units], gates z, r, h; bias [2, 3 units]: input, recurrent) against
# PyTorch's (weight_ih [3 units, features], gates r, z, n; bias_ih, bias_hh), reset applied after the matmul
# in both (Keras reset_after=True).
torch.manual_seed(1)
Wg = (torch.randn(dim, 3 * units) * 0.5).requires_grad_(True)
Ug = (torch.randn(units, 3 * units) * 0.5).requires_grad_(True)
bg = (torch.randn(2, 3 * units) * 0.1).requires_grad_(True)
E.grad = None
gru = torch.nn.GRU(dim, units, batch_first=True)


def to_torch(m):
    z, r, n = m[..., :units], m[..., units:2 * units], m[..., 2 * units:]
    return torch.cat([r, z, n], dim=-1)


emb = E[ids]
packed = torch.nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
_, hg = torch.func.functional_call(
    gru, {"weight_ih_l0": to_torch(Wg).t(), "weight_hh_l0": to_torch(Ug).t(), "bias_ih_l0": to_torch(bg[0]),
          "bias_hh_l0": to_torch(bg[1])}, (packed,))
hg = hg[0]
(hg * R).sum().backward()
save("gru.json", cell_fixture(Wg, Ug, bg, R, hg))

# Conv1D (Keras layout: kernel [kernel_size, channels, filters]) + ReLU + GlobalMaxPooling1D, against
# torch.nn.functional.conv1d (weight [filters, channels, kernel_size]) and a max over time.
torch.manual_seed(2)
x = torch.randn(2, 6, 3)
Wc = (torch.randn(3, 3, 4) * 0.5).requires_grad_(True)
bc = (torch.randn(4) * 0.1).requires_grad_(True)
Rc = torch.randn(2, 4)
y = torch.nn.functional.conv1d(x.transpose(1, 2), Wc.permute(2, 1, 0), bc).relu().amax(dim=2)
(y * Rc).sum().backward()
out = {"torch": torch.__version__, "x": x.tolist(), "W": Wc.tolist(), "b": bc.tolist(), "R": Rc.tolist(),
       "y": y.tolist(), "dW": Wc.grad.tolist(), "db": bc.grad.tolist()}
save("conv1d.json", out)

# SimpleRNN (Keras layout: kernel [features, units], recurrent [units, units], bias [units]) and a
# bidirectional LSTM (Keras: forward and backward cells, outputs concatenated), after the same masked
# embedding, against torch.nn.RNN and torch.nn.LSTM(bidirectional=True) on packed sequences.
torch.manual_seed(3)
Ws = (torch.randn(dim, units) * 0.5).requires_grad_(True)
Us = (torch.randn(units, units) * 0.5).requires_grad_(True)
bs = (torch.randn(units) * 0.1).requires_grad_(True)
E.grad = None
rnn = torch.nn.RNN(dim, units, batch_first=True)
packed = torch.nn.utils.rnn.pack_padded_sequence(E[ids], lengths, batch_first=True, enforce_sorted=False)
_, hs = torch.func.functional_call(
    rnn, {"weight_ih_l0": Ws.t(), "weight_hh_l0": Us.t(), "bias_ih_l0": bs, "bias_hh_l0": torch.zeros(units)},
    (packed,))
hs = hs[0]
(hs * R).sum().backward()
save("simple_rnn.json", cell_fixture(Ws, Us, bs, R, hs))

torch.manual_seed(4)
cells = [[(torch.randn(*s) * 0.5).requires_grad_(True) for s in [(dim, 4 * units), (units, 4 * units)]]
         + [(torch.randn(4 * units) * 0.1).requires_grad_(True)] for _ in range(2)]
R2 = torch.randn(2, 2 * units)
E.grad = None
bi = torch.nn.LSTM(dim, units, batch_first=True, bidirectional=True)
params = {}
for d, suffix in enumerate(["", "_reverse"]):
    Wd, Ud, bd = cells[d]
    params.update({f"weight_ih_l0{suffix}": Wd.t(), f"weight_hh_l0{suffix}": Ud.t(), f"bias_ih_l0{suffix}": bd,
                   f"bias_hh_l0{suffix}": torch.zeros(4 * units)})
packed = torch.nn.utils.rnn.pack_padded_sequence(E[ids], lengths, batch_first=True, enforce_sorted=False)
_, (hb, _) = torch.func.functional_call(bi, params, (packed,))
hb = torch.cat([hb[0], hb[1]], dim=1)
(hb * R2).sum().backward()
out = {"E": E.tolist(), "R": R2.tolist(), "h": hb.tolist(), "ids": ids.tolist(), "dE": E.grad.tolist()}
for d, name in enumerate(["forward", "backward"]):
    for k, t in zip(["W", "U", "b"], cells[d]):
        out[f"{name}_{k}"] = t.tolist()
        out[f"d{name}_{k}"] = t.grad.tolist()
save("bilstm.json", out)
