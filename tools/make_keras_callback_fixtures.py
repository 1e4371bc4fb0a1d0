"""Records what Keras's EarlyStopping and ReduceLROnPlateau do on fixed sequences of epoch values, for
crates/kiln/tests/suite/callbacks.rs to compare kiln's callbacks against.

    .bench-venv/bin/python tools/make_keras_callback_fixtures.py > crates/kiln/tests/fixtures/keras_callbacks.json

(.bench-venv is made by bench/side_by_side.py; any Python with TensorFlow 2.16+ / Keras 3 works.) Each
callback is driven by hand, as `fit` drives it: set_model, on_train_begin, on_epoch_end(epoch, logs) per
epoch until it sets stop_training, on_train_end. The model's one weight is set to the epoch number before
each epoch ends, so the weight left after restore_best_weights names the epoch it came from.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np

SEQ = [1.0, 0.8, 0.79, 0.795, 0.7, 0.71, 0.705, 0.70, 0.69, 0.72, 0.73, 0.74, 0.75, 0.76]


def model():
    m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
    return m


def early_stopping(values, **kw):
    m = model()
    cb = keras.callbacks.EarlyStopping(monitor="val_loss", **kw)
    cb.set_model(m)
    cb.on_train_begin()
    ran = 0
    for epoch, v in enumerate(values):
        m.layers[0].kernel.assign(np.array([[float(epoch + 1)]]))
        cb.on_epoch_end(epoch, {"val_loss": v, "loss": v})
        ran = epoch + 1
        if m.stop_training:
            break
    cb.on_train_end()
    return {"kwargs": kw, "values": values, "epochs_run": ran,
            "weight_after": float(m.layers[0].kernel.numpy()[0, 0])}


def reduce_lr(values, **kw):
    m = model()
    cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **kw)
    cb.set_model(m)
    cb.on_train_begin()
    lrs = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"val_loss": v, "loss": v})
        lrs.append(float(np.array(m.optimizer.learning_rate)))
    return {"kwargs": kw, "values": values, "learning_rates": lrs}


print(json.dumps({
    "keras": keras.__version__,
    "early_stopping": [
        early_stopping(SEQ, patience=2),
        early_stopping(SEQ, patience=2, min_delta=0.02),
        early_stopping(SEQ, patience=3, restore_best_weights=True),
        early_stopping(SEQ, patience=0, restore_best_weights=True),
        early_stopping([0.5, 0.6, 0.7, 0.8], patience=1, mode="max", restore_best_weights=True),
    ],
    "reduce_lr_on_plateau": [
        reduce_lr(SEQ, factor=0.5, patience=2),
        reduce_lr(SEQ, factor=0.5, patience=1, cooldown=2, min_lr=0.2),
        reduce_lr(SEQ, factor=0.1, patience=2, min_delta=0.05),
    ],
}, indent=1))
