"""The peer `bench/serve_load.py` measures kiln serve against: the same models exported to ONNX (`kiln export
--format onnx`), served by onnxruntime behind FastAPI on uvicorn, with kiln serve's request and answer shapes.

    KILN_PEER_MODELS=mnist=runs/x/model.onnx,adult=runs/y/model.onnx \
        uvicorn --app-dir bench onnx_peer:app --workers 2 --port 8100

Images come as {"b64": PNG} (decoded with Pillow, scaled to [0, 1] as kiln does). Table rows come already
prepared, as lists of numbers: the peer has no copy of kiln's preparation, so it is spared that work (kiln
serve parses rows by column name and prepares them).
"""
import base64
import io
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from PIL import Image

opts = ort.SessionOptions()
# Two workers on two cores: one thread each.
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
SESSIONS = {}
for item in os.environ.get("KILN_PEER_MODELS", "").split(","):
    if item:
        name, path = item.split("=", 1)
        s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        SESSIONS[name] = (s, s.get_inputs()[0], s.get_outputs()[0].name)

app = FastAPI()


def instance(x, shape):
    if isinstance(x, dict) and "b64" in x:
        img = Image.open(io.BytesIO(base64.b64decode(x["b64"]))).convert("L")
        return np.asarray(img, np.float32).reshape(shape) / 255.0
    return np.asarray(x, np.float32).reshape(shape)


@app.post("/v1/models/{name}/predict")
def predict(name: str, body: dict):
    if name not in SESSIONS:
        raise HTTPException(404, f"no model {name}")
    sess, inp, out = SESSIONS[name]
    shape = [d for d in inp.shape[1:]]
    x = np.stack([instance(i, shape) for i in body["instances"]])
    p = sess.run([out], {inp.name: x})[0]
    # One sigmoid output: class 1 at 0.5 or more; several: the largest.
    classes = (p[:, 0] >= 0.5).astype(int) if p.shape[1] == 1 else np.argmax(p, axis=1)
    return {"predictions": [{"probabilities": r.tolist(), "class": int(c)} for r, c in zip(p, classes)]}
