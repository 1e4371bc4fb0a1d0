"""Reference attributions for `kiln::explain`, from Captum and scikit-learn, written as JSON fixtures.

Run:  .bench-venv/bin/python tools/make_explain_fixtures.py
      (made with torch 2.15.0, captum 0.9.0, scikit-learn 1.9.1, numpy 2.4.6)
Writes crates/kiln/tests/fixtures/explain/{captum,permutation}.json, read by
crates/kiln/tests/suite/explain.rs, which builds the same models in kiln with the same weights.

captum.json: a small CNN (8x8x1 -> Conv2D 4 3x3 relu -> MaxPool 2 -> Dense 3 softmax) and an MLP (5 -> Dense 8
tanh -> Dense 3 softmax), in float64; IntegratedGradients (Gauss-Legendre 50 steps, Riemann trapezoid 20),
Saliency, and Occlusion, on probabilities and on logits. Weights and attributions are in kiln's layouts:
images NHWC, conv kernels [kh, kw, c_in, c_out], dense kernels [in, out]. The torch CNN flattens NHWC as kiln
does (a permute before Flatten).

permutation.json: scikit-learn's permutation_importance of an MLP (a numpy forward, the same weights kiln
gets) for accuracy and neg_log_loss, and the row orders it used: scikit-learn draws one seed from
random_state, and each column's repeats shuffle one arange in turn with RandomState(seed), each shuffle
applied to the column as the last repeat left it; this script replays that, checks it gives scikit-learn's
numbers, and writes each repeat's resulting row order.
"""
import json
import os

import numpy as np
import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency
from sklearn.inspection import permutation_importance

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "fixtures", "explain")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


class Cnn(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.dense = torch.nn.Linear(36, 3)
        self.logits = logits

    def forward(self, x):  # x: NCHW
        y = torch.relu(self.conv(x))
        y = torch.nn.functional.max_pool2d(y, 2)
        y = self.dense(y.permute(0, 2, 3, 1).flatten(1))
        return y if self.logits else torch.softmax(y, dim=1)


class Mlp(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.hidden = torch.nn.Linear(5, 8)
        self.out = torch.nn.Linear(8, 3)
        self.logits = logits

    def forward(self, x):
        y = self.out(torch.tanh(self.hidden(x)))
        return y if self.logits else torch.softmax(y, dim=1)


def nhwc(t):  # [1, C, H, W] -> H*W*C values
    return flat(t[0].permute(1, 2, 0))


def cnn_fixture():
    net = Cnn(False)
    with torch.no_grad():
        net.conv.weight.mul_(2.0)
    logit_net = Cnn(True)
    logit_net.load_state_dict(net.state_dict())
    images = torch.rand(2, 1, 8, 8)
    cases = []
    for i, target in [(0, 0), (1, 2)]:
        x = images[i : i + 1].clone().requires_grad_(True)
        for logits, model in [(False, net), (True, logit_net)]:
            ig = IntegratedGradients(model)
            for rule, steps in [("gausslegendre", 50), ("riemann_trapezoid", 20)]:
                a, delta = ig.attribute(
                    x, target=target, n_steps=steps, method=rule, return_convergence_delta=True
                )
                cases.append(dict(image=i, target=target, logits=logits, method="integrated_gradients",
                                  rule=rule, steps=steps, attributions=nhwc(a), delta=float(delta)))
        s = Saliency(net).attribute(x, target=target)
        cases.append(dict(image=i, target=target, logits=False, method="saliency", attributions=nhwc(s)))
        for window, stride in [((1, 3, 3), (1, 2, 2)), ((1, 4, 4), (1, 4, 4))]:
            o = Occlusion(net).attribute(x, target=target, sliding_window_shapes=window, strides=stride)
            cases.append(dict(image=i, target=target, logits=False, method="occlusion",
                              window=[window[1], window[2], 1], strides=[stride[1], stride[2], 1],
                              attributions=nhwc(o)))
    return dict(
        conv_kernel=flat(net.conv.weight.permute(2, 3, 1, 0)),
        conv_bias=flat(net.conv.bias),
        dense_kernel=flat(net.dense.weight.t()),
        dense_bias=flat(net.dense.bias),
        images=[nhwc(images[i : i + 1]) for i in range(2)],
        cases=cases,
    )


def mlp_fixture():
    net = Mlp(False)
    logit_net = Mlp(True)
    logit_net.load_state_dict(net.state_dict())
    x = torch.randn(1, 5, requires_grad=True)
    baseline = torch.randn(1, 5)
    cases = []
    for logits, model in [(False, net), (True, logit_net)]:
        for target in range(3):
            a, delta = IntegratedGradients(model).attribute(
                x, baselines=baseline, target=target, n_steps=50, return_convergence_delta=True
            )
            cases.append(dict(target=target, logits=logits, attributions=flat(a), delta=float(delta)))
    return dict(
        hidden_kernel=flat(net.hidden.weight.t()),
        hidden_bias=flat(net.hidden.bias),
        out_kernel=flat(net.out.weight.t()),
        out_bias=flat(net.out.bias),
        x=flat(x),
        baseline=flat(baseline),
        cases=cases,
    )


class NumpyMlp:
    """A fitted classifier to scikit-learn: 4 -> Dense 6 relu -> Dense 3 softmax, weights given."""

    _estimator_type = "classifier"

    def __init__(self, w1, b1, w2, b2):
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2
        self.classes_ = np.arange(3)

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, ClassifierTags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        h = np.maximum(X @ self.w1 + self.b1, 0.0)
        z = h @ self.w2 + self.b2
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y):
        return float((self.predict(X) == y).mean())


def permutation_fixture():
    rng = np.random.RandomState(1)
    n, repeats, seed = 60, 5, 0
    X = rng.randn(n, 4)
    X[:, 3] *= 0.1  # a column the model barely reads
    w1, b1 = rng.randn(4, 6), rng.randn(6) * 0.1
    w2, b2 = rng.randn(6, 3), rng.randn(3) * 0.1
    est = NumpyMlp(w1, b1, w2, b2)
    y = est.predict(X)
    flip = rng.rand(n) < 0.2
    y[flip] = rng.randint(0, 3, flip.sum())  # label noise, so accuracy is not 1
    result = permutation_importance(est, X, y, scoring=["accuracy", "neg_log_loss"], n_repeats=repeats,
                                    random_state=seed)
    # The orders scikit-learn used, replayed.
    draw = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    shuffle = np.random.RandomState(draw)
    idx, order = np.arange(n), np.arange(n)
    orders = []
    for _ in range(repeats):
        # scikit-learn shuffles the already shuffled column again: repeat r reads rows order[idx].
        shuffle.shuffle(idx)
        order = order[idx]
        orders.append(order.copy())
    scorers = {"accuracy": lambda P: float((P.argmax(1) == y).mean()),
               "neg_log_loss": lambda P: float(np.mean(np.log(np.clip(P[np.arange(n), y], 1e-15, 1))))}
    out = dict(x=X.reshape(-1).tolist(), y=y.tolist(), w1=w1.reshape(-1).tolist(), b1=b1.tolist(),
               w2=w2.reshape(-1).tolist(), b2=b2.tolist(), orders=[o.tolist() for o in orders], scorings={})
    for name, score in scorers.items():
        base = score(est.predict_proba(X))
        replay = np.zeros((4, repeats))
        for c in range(4):
            for r, o in enumerate(orders):
                Xp = X.copy()
                Xp[:, c] = X[o, c]
                replay[c, r] = base - score(est.predict_proba(Xp))
        assert np.allclose(replay, result[name].importances, atol=1e-12), (name, replay, result[name].importances)
        out["scorings"][name] = dict(baseline=base, importances=result[name].importances.tolist(),
                                     mean=result[name].importances_mean.tolist(),
                                     std=result[name].importances_std.tolist())
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "captum.json"), "w") as f:
        json.dump(dict(cnn=cnn_fixture(), mlp=mlp_fixture()), f)
    with open(os.path.join(OUT, "permutation.json"), "w") as f:
        json.dump(permutation_fixture(), f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
