"""PyTorch reference for kiln's Embedding(mask_zero) -> LSTM: the last state of each sequence and the gradients
of sum(h * R) for fixed weights, with one sequence padded (PyTorch: pack_padded_sequence). Writes
crates/kiln/tests/fixtures/lstm.json.

    python3 tools/make_lstm_fixture.py     # needs torch
"""
import json
import os

import torch

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
out = {
    "torch": torch.__version__, "ids": ids.tolist(), "E": E.tolist(), "W": W.tolist(), "U": U.tolist(),
    "b": b.tolist(), "R": R.tolist(), "h": h.tolist(),
    "dE": E.grad.tolist(), "dW": W.grad.tolist(), "dU": U.grad.tolist(), "db": b.grad.tolist(),
}
path = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "fixtures", "lstm.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", os.path.normpath(path))
