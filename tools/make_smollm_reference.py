"""Hugging Face transformers' own reading of SmolLM2-135M-Instruct's GGUF file (the one tools/fetch_models.sh
puts in models/), as the reference kiln's GGUF model is held to: token ids of texts through the tokenizer
transformers builds from the file's metadata, the chat template rendered, the logits of the last position of
prompts (the 40 largest and 40 fixed ids), and greedy continuations.

transformers dequantizes the Q4_1/Q8_0 weights to float32 and computes in float32; kiln keeps them quantized
and dequantizes block by block, so the two differ only by the order of float sums.

    .bench-venv/bin/pip install gguf==0.17.1 accelerate      # beside torch and transformers
    .bench-venv/bin/python tools/make_smollm_reference.py

Writes crates/kiln/tests/fixtures/smollm/reference.json, read by crates/kiln/tests/suite/llm.rs.
"""
import json
import os

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..")
DIR = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "crates", "kiln", "tests", "fixtures", "smollm")

TEXTS = [
    "Hello, world!",
    "The year 2024 had 366 days; 12345 is a number.",
    "  two  spaces,\ttabs\nand\n\nnewlines  ",
    "café naïve résumé — “quotes” 😀 日本語",
    "<|im_start|>user\nHi<|im_end|>",
    "",
    "don't I'll we've SHOUT",
]
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "How do I return a jacket I bought last week?"}],
]
FIXED_IDS = list(range(0, 49152, 1229))[:40]

torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(DIR, gguf_file=FILE)
model = AutoModelForCausalLM.from_pretrained(DIR, gguf_file=FILE, dtype=torch.float32)
model.eval()

out = {"transformers": transformers.__version__, "torch": torch.__version__, "texts": [], "prompts": []}
for t in TEXTS:
    ids = tok(t, add_special_tokens=False).input_ids
    out["texts"].append({"text": t, "ids": ids, "decoded": tok.decode(ids)})

prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CONVERSATIONS]
prompts.append("Once upon a time, there was a")
for i, p in enumerate(prompts):
    ids = tok(p, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
        gen = model.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1]:]
    top = torch.topk(logits, 40)
    out["prompts"].append({
        "conversation": CONVERSATIONS[i] if i < len(CONVERSATIONS) else None,
        "text": p,
        "ids": ids[0].tolist(),
        "top_ids": top.indices.tolist(),
        "top_logits": top.values.tolist(),
        "fixed_ids": FIXED_IDS,
        "fixed_logits": logits[FIXED_IDS].tolist(),
        "greedy": gen.tolist(),
        "greedy_text": tok.decode(gen),
    })

os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, "reference.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
print("wrote", os.path.normpath(path))
for p in out["prompts"]:
    print(repr(p["greedy_text"]))
