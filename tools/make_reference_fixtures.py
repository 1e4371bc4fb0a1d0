"""Reference values for definitions a gradient check cannot catch, computed by PyTorch and Keras.

Run from the repository root:
    .bench-venv/bin/python tools/make_reference_fixtures.py
(needs `pip install torch tensorflow-cpu numpy`; Keras 3 comes with TensorFlow and runs on its backend).

Writes
    crates/kiln-core/tests/fixtures/reference/*.json   read by crates/kiln-core/tests/suite/reference_forwards.rs
    crates/kiln/tests/fixtures/optimizers.json          read by crates/kiln/tests/suite/optimizers.rs

Each file maps a name to {"shape": [...], "data": [...]} (row-major), plus "meta" naming the framework and its
version that computed it. Which framework made a fixture follows what kiln claims for that op:
  Keras (TensorFlow backend): average pooling with "same" padding (padding left out of the count), batch
      normalization (training and inference, moving averages), dropout's scaling, every loss (Keras's 1e-7
      clipping of probabilities, its renormalization, sample weights), every optimizer and two schedules.
  PyTorch: gelu (exact erf form, kiln documents it as PyTorch's default), softmax and log_softmax, batched
      matmul, reductions: definitions the frameworks share, computed in float64.
Nothing here restates a definition in numpy: each value comes from the framework's own function, and the
gradients from its autodiff (of L = sum(y * r) for a fixed random r, or of the scalar loss itself).

Inputs are rounded to float32 before use, so kiln (which reads them as f32) sees the very inputs the
reference saw. Torch ops and Keras layers compute in float64; losses and optimizers compute in float32, as
Keras users run them, because there the float32 constants (1 - 1e-7 rounds to 1 - 2^-23) are part of the
definition.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # the same order of operations on every machine
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CORE_OUT = os.path.join(ROOT, "crates", "kiln-core", "tests", "fixtures", "reference")
KILN_OUT = os.path.join(ROOT, "crates", "kiln", "tests", "fixtures")

rng = np.random.default_rng(20240601)
torch.manual_seed(0)
keras.utils.set_random_seed(0)

TORCH_META = {"framework": "pytorch", "version": torch.__version__, "dtype": "float64"}
KERAS_META64 = {"framework": "keras", "version": keras.__version__, "backend": "tensorflow " + tf.__version__,
                "dtype": "float64"}
KERAS_META32 = dict(KERAS_META64, dtype="float32")


def t(x):
    a = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)
    return {"shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


def save(directory, name, meta, **tensors):
    os.makedirs(directory, exist_ok=True)
    out = {"meta": meta}
    out.update({k: t(v) for k, v in tensors.items()})
    with open(os.path.join(directory, name + ".json"), "w") as f:
        json.dump(out, f)


def f32(a):
    """Rounded to float32, held as float64: what kiln reads from the JSON."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def randn(*shape, scale=1.0, shift=0.0):
    return f32(rng.standard_normal(shape) * scale + shift)


def uniform(*shape, lo=0.0, hi=1.0):
    return f32(rng.uniform(lo, hi, shape))


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def tape_grads(fn, *xs):
    """fn(*xs) as computed by TensorFlow, and d fn / d x for each x."""
    xs = [tf.Variable(x) for x in xs]
    with tf.GradientTape() as tape:
        y = fn(*xs)
    return y, tape.gradient(y, xs)


# ---------------------------------------------------------------- Keras layers (float64)

def avg_pool():
    for name, shape, k, s in [("avg_pool_3x3_same_stride2", (2, 7, 6, 3), 3, 2),
                              ("avg_pool_2x2_same_stride2", (2, 5, 5, 2), 2, 2)]:
        x = randn(*shape)
        r = uniform(*[-(-d // s) if i in (1, 2) else d for i, d in enumerate(shape)])
        layer = keras.layers.AveragePooling2D(pool_size=k, strides=s, padding="same", dtype="float64")
        y = layer(x)
        _, (dx,) = tape_grads(lambda x: tf.reduce_sum(layer(x) * r), x)
        assert list(y.shape) == list(r.shape)
        save(CORE_OUT, name, dict(KERAS_META64, op=f"AveragePooling2D({k}, strides={s}, padding='same')"),
             x=x, y=y, r=r, dx=dx)


def batch_norm():
    c = 5
    x = randn(4, 3, 2, c, scale=2.0, shift=1.5)
    gamma, beta = randn(c, scale=0.5, shift=1.0), randn(c)
    mean0, var0 = randn(c, scale=0.3), uniform(c, lo=0.5, hi=2.0)
    r = uniform(*x.shape)
    layer = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.99, dtype="float64")
    layer.build(x.shape)
    layer.set_weights([gamma, beta, mean0, var0])
    # Training: batch statistics; the call also moves the moving averages once.
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = layer(xv, training=True)
        loss = tf.reduce_sum(y * r)
    dx, dgamma, dbeta = tape.gradient(loss, [xv, layer.gamma, layer.beta])
    save(CORE_OUT, "batch_norm_training",
         dict(KERAS_META64, op="BatchNormalization(epsilon=1e-3, momentum=0.99), training=True"),
         x=x, gamma=gamma, beta=beta, moving_mean=mean0, moving_variance=var0, r=r, y=y, dx=dx, dgamma=dgamma,
         dbeta=dbeta, moving_mean_after=layer.moving_mean, moving_variance_after=layer.moving_variance)
    # Inference: the given moving statistics.
    layer.set_weights([gamma, beta, mean0, var0])
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = layer(xv, training=False)
        loss = tf.reduce_sum(y * r)
    dx, dgamma, dbeta = tape.gradient(loss, [xv, layer.gamma, layer.beta])
    save(CORE_OUT, "batch_norm_inference",
         dict(KERAS_META64, op="BatchNormalization(epsilon=1e-3), training=False"),
         x=x, gamma=gamma, beta=beta, moving_mean=mean0, moving_variance=var0, r=r, y=y, dx=dx, dgamma=dgamma,
         dbeta=dbeta)


def dropout():
    rate = 0.3
    x = np.ones((200, 50), dtype=np.float32)
    y = keras.layers.Dropout(rate, seed=1)(x, training=True).numpy()
    kept = y[y != 0]
    assert np.all(kept == kept[0])
    save(CORE_OUT, "dropout", dict(KERAS_META32, op=f"Dropout({rate}) on ones, training=True"),
         rate=np.array([rate]), keep_scale=kept[:1], dropped_fraction=np.array([np.mean(y == 0)]))


# ---------------------------------------------------------------- PyTorch ops (float64)

def gelu():
    x = np.concatenate([f32(np.linspace(-6, 6, 49)), randn(15, scale=2.0)]).reshape(4, 16)
    xt = leaf(x)
    y = F.gelu(xt, approximate="none")
    r = uniform(*x.shape)
    (y * torch.tensor(r)).sum().backward()
    save(CORE_OUT, "gelu", dict(TORCH_META, op="torch.nn.functional.gelu(approximate='none')"),
         x=x, y=y.detach(), r=r, dx=xt.grad)


def softmax():
    x = randn(3, 4, 5, scale=2.0)
    x[1, 2, :] += 1000.0  # a lane far from zero: only a stable softmax survives it
    x = f32(x)
    out = {"x": x}
    for axis in range(3):
        for name, fn in [("softmax", F.softmax), ("log_softmax", F.log_softmax)]:
            xt = leaf(x)
            y = fn(xt, dim=axis)
            r = uniform(*x.shape)
            (y * torch.tensor(r)).sum().backward()
            out[f"{name}_axis{axis}"] = y.detach()
            out[f"r_{name}_axis{axis}"] = r
            out[f"dx_{name}_axis{axis}"] = xt.grad
    save(CORE_OUT, "softmax", dict(TORCH_META, op="torch.nn.functional.softmax / log_softmax(dim=axis)"), **out)


def matmul():
    out = {}
    for name, sa, sb in [("batched", (3, 4, 5), (3, 5, 2)), ("batched4d", (2, 2, 3, 4), (2, 2, 4, 3)),
                         ("shared", (3, 4, 5), (5, 2))]:
        a, b = leaf(randn(*sa)), leaf(randn(*sb))
        y = torch.matmul(a, b)
        r = uniform(*y.shape)
        (y * torch.tensor(r)).sum().backward()
        out.update({f"{name}_a": a.detach(), f"{name}_b": b.detach(), f"{name}_y": y.detach(), f"{name}_r": r,
                    f"{name}_da": a.grad, f"{name}_db": b.grad})
    save(CORE_OUT, "matmul", dict(TORCH_META, op="torch.matmul"), **out)


def reductions():
    x = randn(3, 4, 5, scale=3.0)
    assert len(np.unique(x)) == x.size  # max has one winner per lane
    out = {"x": x}
    ops = {"sum": lambda v, **k: torch.sum(v, **k), "mean": lambda v, **k: torch.mean(v, **k),
           "max": lambda v, **k: torch.amax(v, **k)}
    for op, fn in ops.items():
        for axis in [0, 1, 2, None]:
            for keepdim in [False, True]:
                xt = leaf(x)
                dim = tuple(range(3)) if axis is None else axis
                y = fn(xt, dim=dim, keepdim=keepdim)
                r = uniform(*y.shape)
                (y * torch.tensor(r)).sum().backward()
                key = f"{op}_{'all' if axis is None else f'axis{axis}'}_{'keep' if keepdim else 'drop'}"
                out.update({key: y.detach(), "r_" + key: r, "dx_" + key: xt.grad})
    save(CORE_OUT, "reductions", dict(TORCH_META, op="torch.sum / mean / amax(dim, keepdim)"), **out)


# ---------------------------------------------------------------- Keras losses (float32)

def losses():
    n, c = 5, 4
    weights = f32([0.5, 2.0, 0.0, 1.0, 3.0])
    out = {"weights": weights}

    def run(key, loss_obj, pred, target):
        pred32, target32 = pred.astype(np.float32), target.astype(np.float32)
        for suffix, kw in [("", {}), ("_weighted", {"sample_weight": weights.astype(np.float32)})]:
            y, (dp,) = tape_grads(lambda p: loss_obj(target32, p, **kw), pred32)
            out[f"{key}{suffix}_loss"] = np.reshape(y.numpy(), (1,))
            out[f"{key}{suffix}_grad"] = dp
        out[f"{key}_pred"], out[f"{key}_target"] = pred, target

    logits = randn(n, c, scale=2.0)
    logits[3] = f32([40.0, -40.0, 0.0, 3.0])  # saturated: only a fused, stable loss gets this right
    onehot = np.eye(c)[[0, 3, 1, 2, 1]]
    onehot[4] = f32([0.1, 0.6, 0.2, 0.1])  # a soft target row
    run("softmax_ce", keras.losses.CategoricalCrossentropy(from_logits=True), logits, onehot)

    labels = np.array([2, 0, 3, 1, 1])
    y, (dz,) = tape_grads(lambda z: keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, z),
                          logits.astype(np.float32))
    yw, (dzw,) = tape_grads(lambda z: keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, z, sample_weight=weights.astype(np.float32)), logits.astype(np.float32))
    out.update(sparse_ce_logits=logits, sparse_ce_labels=labels.astype(np.float64), sparse_ce_loss=[y.numpy()],
               sparse_ce_grad=dz, sparse_ce_weighted_loss=[yw.numpy()], sparse_ce_weighted_grad=dzw)

    z = randn(n, c, scale=3.0)
    z[0] = f32([30.0, -30.0, 80.0, -80.0])
    t01 = f32(rng.integers(0, 2, (n, c)))
    t01[2] = f32([0.3, 0.7, 0.0, 1.0])  # soft targets
    run("sigmoid_bce", keras.losses.BinaryCrossentropy(from_logits=True), z, t01)

    # Probabilities that hit 0 and 1 exactly and others beyond the clip bounds: Keras's clipping decides the value.
    p = uniform(n, c, lo=0.05, hi=0.95)
    p[0] = f32([0.0, 1.0, 1e-9, 1.0 - 1e-9])
    p[1] = f32([0.0, 1.0, 0.5, 1e-12])
    tb = t01.copy()
    tb[0] = f32([1.0, 0.0, 1.0, 0.0])  # the wrong end of each clipped probability: the clip is the loss
    tb[1] = f32([0.0, 1.0, 1.0, 1.0])
    run("bce", keras.losses.BinaryCrossentropy(), p, tb)

    # Rows that do not sum to 1 (Keras renormalizes) and zeros where the target is 1 (the clip decides).
    q = uniform(n, c, lo=0.0, hi=2.0)
    q[0] = f32([0.0, 0.5, 0.25, 0.25])
    q[1] = f32([3.0, 0.0, 0.0, 1e-9])
    tq = np.eye(c)[[0, 3, 2, 1, 0]]
    tq[4] = f32([0.25, 0.25, 0.25, 0.25])
    run("cce", keras.losses.CategoricalCrossentropy(), q, tq)

    run("mse", keras.losses.MeanSquaredError(), randn(n, c), randn(n, c))
    save(CORE_OUT, "losses", dict(KERAS_META32, op="keras.losses.* (reduction sum_over_batch_size)"), **out)


# ---------------------------------------------------------------- Keras optimizers (float32)

def optimizer_slots(opt, var):
    """The optimizer's per-variable state, named as kiln's slot1/slot2 hold it."""
    idx = opt._get_variable_index(var)
    pick = lambda attr: getattr(opt, attr)[idx].numpy()  # noqa: E731
    if isinstance(opt, keras.optimizers.SGD):
        return {"slot1": pick("momentums")} if opt.momentum else {}
    if isinstance(opt, (keras.optimizers.Adam, keras.optimizers.AdamW)):
        return {"slot1": pick("_momentums"), "slot2": pick("_velocities")}
    if isinstance(opt, keras.optimizers.RMSprop):
        s = {"slot1": pick("_velocities")}
        if opt.momentum > 0:
            s["slot2"] = pick("_momentums")
        return s
    if isinstance(opt, keras.optimizers.Adagrad):
        return {"slot1": pick("_accumulators")}
    raise ValueError(opt)


def optimizers():
    steps = 6
    p0 = {"w": randn(2, 3), "b": randn(3)}
    # Fixed gradients, one set per step: mixed magnitudes, a sign flip, and an entry that stays zero.
    grads = []
    for s in range(steps):
        g = {"w": randn(2, 3), "b": randn(3, scale=0.1)}
        g["w"][0, 0] = 0.0
        g["w"][1, 2] = f32(5.0 * (-1) ** s)
        grads.append(g)
    cases = [
        ("sgd", "Sgd { learning_rate: 0.1 }", keras.optimizers.SGD(0.1)),
        ("sgd_momentum", "Sgd { learning_rate: 0.1, momentum: 0.9 }", keras.optimizers.SGD(0.1, momentum=0.9)),
        ("sgd_nesterov", "Sgd { learning_rate: 0.1, momentum: 0.9, nesterov }",
         keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
        ("adam", "Adam { learning_rate: 0.1 } (defaults otherwise)", keras.optimizers.Adam(0.1)),
        ("adam_betas", "Adam { learning_rate: 0.05, beta_1: 0.5, beta_2: 0.9, epsilon: 1e-3 }",
         keras.optimizers.Adam(0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-3)),
        ("adamw", "AdamW { learning_rate: 0.1, weight_decay: 0.2 }",
         keras.optimizers.AdamW(0.1, weight_decay=0.2)),
        ("rmsprop", "RmsProp { learning_rate: 0.01 }", keras.optimizers.RMSprop(0.01)),
        ("rmsprop_momentum", "RmsProp { learning_rate: 0.01, rho: 0.8, momentum: 0.5 }",
         keras.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5)),
        ("adagrad", "Adagrad { learning_rate: 0.1 }", keras.optimizers.Adagrad(0.1)),
        # Schedules: the rate for step i (0-based) is schedule(i), as kiln's fit sets it before each step.
        ("adam_cosine_warmup", "Adam { learning_rate: 0.1 } + Cosine { decay_steps: 4, warmup_steps: 2, alpha: 0.1 }",
         keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
             0.0, decay_steps=4, alpha=0.1, warmup_target=0.1, warmup_steps=2))),
        ("sgd_momentum_exponential",
         "Sgd { learning_rate: 0.1, momentum: 0.9 } + Exponential { decay_steps: 2, decay_rate: 0.5 }",
         keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5),
                              momentum=0.9)),
    ]
    out = {"meta": dict(KERAS_META32, steps=steps,
                        note="params and slots after each step; slot1/slot2 as kiln's Optimizer::state holds them")}
    out["initial"] = {k: t(v) for k, v in p0.items()}
    out["gradients"] = [{k: t(v) for k, v in g.items()} for g in grads]
    for name, kiln_config, opt in cases:
        variables = {k: keras.Variable(v.astype(np.float32), name=k) for k, v in p0.items()}
        order = list(variables)
        opt.build([variables[k] for k in order])
        history = []
        for g in grads:
            opt.apply_gradients([(tf.constant(g[k].astype(np.float32)), variables[k]) for k in order])
            history.append({k: {"value": t(variables[k]), **{s: t(v) for s, v in
                                                            optimizer_slots(opt, variables[k]).items()}}
                            for k in order})
        out[name] = {"kiln": kiln_config, "keras": type(opt).__name__, "steps": history}
    os.makedirs(KILN_OUT, exist_ok=True)
    with open(os.path.join(KILN_OUT, "optimizers.json"), "w") as f:
        json.dump(out, f)


avg_pool()
batch_norm()
dropout()
gelu()
softmax()
matmul()
reductions()
losses()
optimizers()
print("wrote", os.path.relpath(CORE_OUT, ROOT), "and", os.path.relpath(os.path.join(KILN_OUT, "optimizers.json"),
                                                                        ROOT))
