"""llama.cpp's own run of SmolLM2-135M-Instruct's GGUF file (through llama-cpp-python, whose fast kernels
quantize activations to 8 bits, Q8_1 for Q4_1 weights), as a second reference for kiln's GGUF model: for the
prompts of reference.json (the same token ids), the last position's logits (the 40 largest and 40 fixed ids)
and 32 greedy tokens, each step with the gap between the reference's two largest logits, so that a test can
stop comparing where the reference's choice was within the tolerance.

    .bench-venv/bin/pip install llama-cpp-python==0.3.16 numpy     # compiles llama.cpp (minutes)
    .bench-venv/bin/python tools/make_llamacpp_reference.py

Writes crates/kiln/tests/fixtures/smollm/llamacpp.json, read by crates/kiln/tests/suite/llm.rs; with --out PATH
it writes there instead and prints how far this machine's llama.cpp is from the committed fixture's (llama.cpp's
kernels differ with the processor it is built for: 1.5-3.2% of the largest logit between an AVX-512 and an
AVX2-only machine, the same version, the same prompts).
"""
import argparse
import json
import os

import llama_cpp
import numpy as np
from llama_cpp import Llama

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
FIXTURES = os.path.join(ROOT, "crates", "kiln", "tests", "fixtures", "smollm")
STEPS = 32

def last_logits(llm):
    """The last evaluated position's logits (llama-cpp-python keeps `scores` only with logits_all)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)


ap = argparse.ArgumentParser()
ap.add_argument("--out", help="write here instead of the fixture, and compare with the fixture")
args = ap.parse_args()
if args.out and os.path.realpath(args.out) == os.path.realpath(os.path.join(FIXTURES, "llamacpp.json")):
    ap.error("--out is the fixture itself: give another path to compare with it")
ref = json.load(open(os.path.join(FIXTURES, "reference.json")))
llm = Llama(model_path=MODEL, n_ctx=512, n_threads=2, n_batch=512, verbose=False, seed=0)
out = {"llama_cpp_python": llama_cpp.__version__, "prompts": []}
for p in ref["prompts"]:
    ids = p["ids"]
    llm.reset()
    llm.eval(ids)
    logits = last_logits(llm)
    top = np.argsort(-logits)[:40]
    greedy, gaps = [], []
    step = logits
    for _ in range(STEPS):
        order = np.argsort(-step)
        greedy.append(int(order[0]))
        gaps.append(float(step[order[0]] - step[order[1]]))
        llm.eval([int(order[0])])
        step = last_logits(llm)
    out["prompts"].append({
        "ids": ids,
        "top_ids": [int(i) for i in top],
        "top_logits": [float(logits[i]) for i in top],
        "fixed_ids": p["fixed_ids"],
        "fixed_logits": [float(logits[i]) for i in p["fixed_ids"]],
        "greedy": greedy,
        "gaps": gaps,
        "greedy_text": llm.detokenize(greedy).decode("utf-8", "replace"),
    })
path = args.out or os.path.join(FIXTURES, "llamacpp.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
print("wrote", os.path.normpath(path))
if args.out:
    committed = json.load(open(os.path.join(FIXTURES, "llamacpp.json")))
    for a, b in zip(committed["prompts"], out["prompts"]):
        top = abs(a["top_logits"][0])
        here = dict(zip(b["top_ids"] + b["fixed_ids"], b["top_logits"] + b["fixed_logits"]))
        there = dict(zip(a["top_ids"] + a["fixed_ids"], a["top_logits"] + a["fixed_logits"]))
        common = [t for t in there if t in here]
        worst = max(abs(here[t] - there[t]) for t in common) / top
        print(f"prompt of {len(a['ids'])} tokens: logits {worst:.2e} of the largest away from the fixture's")
for p in out["prompts"]:
    print(repr(p["greedy_text"]), "smallest gap", round(min(p["gaps"]), 4))
