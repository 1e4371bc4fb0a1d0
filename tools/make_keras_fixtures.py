#!/usr/bin/env python3
"""Small Keras models saved both ways Keras saves them (legacy HDF5 .h5, as `model.save('mnist_model.h5')`,
and Keras 3's .keras zip), with inputs and Keras's outputs, for kiln's import test
(crates/kiln/tests/suite/keras.rs): every layer kind kiln imports, weights random (batch-norm statistics
included) so that no layout error hides behind zeros or ones.

    KERAS_BACKEND=torch .bench-venv/bin/python tools/make_keras_fixtures.py

Writes crates/kiln/tests/fixtures/keras/{NAME}.h5, {NAME}.keras and {NAME}.json. Made with keras 3.15.1 on
the torch backend (torch 2.15), h5py 3.16.
"""
import json
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates" / "kiln" / "tests" / "fixtures" / "keras"


def randomize(model, rng):
    for w in model.weights:
        v = rng.uniform(-0.5, 0.5, w.shape).astype("float32")
        if "variance" in w.path:
            v = 0.5 + np.abs(v)
        w.assign(v)


def ids(rng, n, steps, vocab):
    x = np.zeros((n, steps), "float32")
    for r in range(n):
        length = steps if r == 0 else 1 if r == 1 else rng.integers(1, steps + 1)
        x[r, :length] = rng.integers(1, vocab, length)
    return x


def models(rng):
    cnn = keras.Sequential([
        keras.Input((9, 8, 2)),
        layers.Conv2D(4, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(3, (2, 2), strides=2, padding="same", activation="tanh"),
        layers.AveragePooling2D((2, 2), strides=1, padding="same"),
        layers.BatchNormalization(),
        layers.Flatten(),
        layers.Dense(8, activation="relu"),
        layers.Dropout(0.5),
        layers.Activation("sigmoid"),
        layers.Dense(3, activation="softmax"),
    ], name="cnn")
    yield "cnn", cnn, [rng.uniform(0, 1, (4, 9, 8, 2)).astype("float32")]

    text = keras.Sequential([
        keras.Input((7,)),
        layers.Embedding(20, 5, mask_zero=True),
        layers.LSTM(4, return_sequences=True),
        layers.GRU(3),
        layers.Dense(2, activation="softmax"),
    ], name="text")
    yield "text", text, [ids(rng, 5, 7, 20)]

    bidir = keras.Sequential([
        keras.Input((6,)),
        layers.Embedding(15, 4),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True)),
        layers.Conv1D(4, 2, activation="relu"),
        layers.GlobalMaxPooling1D(),
        layers.Dense(1, activation="sigmoid"),
    ], name="bidir")
    yield "bidir", bidir, [ids(rng, 4, 6, 15)]

    rnn = keras.Sequential([
        keras.Input((5,)),
        layers.Embedding(12, 3, mask_zero=True),
        layers.SimpleRNN(4, return_sequences=True),
        layers.GlobalAveragePooling1D(),
        layers.LayerNormalization(epsilon=1e-3),
        layers.Dense(2, activation="softmax"),
    ], name="rnn")
    yield "rnn", rnn, [ids(rng, 4, 5, 12)]


def functional(rng):
    """A graph model (Keras's functional API): two inputs, merges, two outputs."""
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    x = layers.Dense(5, activation="relu", name="da")(a)
    y = layers.Dense(5, activation="tanh", name="db")(b)
    s = layers.Add(name="sum")([x, y, x])
    p = layers.Multiply(name="prod")([x, y])
    d = layers.Dot(axes=1, normalize=True, name="cos")([s, p])
    c = layers.Concatenate(name="all")([s, p, d])
    kind = layers.Dense(3, activation="softmax", name="kind")(c)
    amount = layers.Dense(1, name="amount")(c)
    model = keras.Model([a, b], [kind, amount], name="functional")
    inputs = [rng.uniform(-1, 1, (4, 4)).astype("float32"), rng.uniform(-1, 1, (4, 3)).astype("float32")]
    return model, inputs


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, model, inputs in [*models(rng), ("functional", *functional(rng))]:
        randomize(model, rng)
        out = model.predict(inputs[0] if len(inputs) == 1 else inputs, verbose=0)
        outs = out if isinstance(out, list) else [out]
        model.save(OUT / f"{name}.h5")
        model.save(OUT / f"{name}.keras")
        (OUT / f"{name}.json").write_text(json.dumps({
            "inputs": [{"shape": list(x.shape), "data": x.ravel().tolist()} for x in inputs],
            "outputs": [{"shape": list(o.shape), "data": np.asarray(o).ravel().tolist()} for o in outs],
        }))
        print(f"{name}: {model.count_params()} parameters, outputs {[o.shape for o in outs]}")


if __name__ == "__main__":
    main()
