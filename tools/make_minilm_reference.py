"""Reference token ids and sentence embeddings of all-MiniLM-L6-v2, made by sentence-transformers from the
same files kiln reads (models/all-MiniLM-L6-v2, from tools/fetch_models.sh), for
crates/kiln/tests/suite/pretrained_bert.rs.

    .bench-venv/bin/pip install sentence-transformers==6.2.0   # once; torch is already in the bench venv
    .bench-venv/bin/python tools/make_minilm_reference.py

Writes crates/kiln/tests/fixtures/minilm_reference.json.
"""
import json
import os
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "crates", "kiln", "tests", "fixtures", "minilm_reference.json")

SENTENCES = [
    "How do I return an item I bought online?",
    "The dress fits perfectly and the fabric is lovely.",
    "",
    "Refunds are issued within 5-7 business days after we receive your package!!!",
    "Café crème, naïve résumé: accents and UNUSUAL Casing.",
    "北京 is a city; emoji 🙂 and symbols $%& are tokens too.",
    "short",
    # Longer than the model's 256 tokens: cut there, as sentence-transformers does.
    " ".join(["The shipping policy covers domestic and international orders placed through the store."] * 30),
]


def main():
    torch.set_num_threads(2)
    model = SentenceTransformer(MODEL, device="cpu")
    tok = model.tokenizer(SENTENCES, truncation=True, max_length=model.max_seq_length)
    # Batches of 3, so texts of different lengths share a padded batch (kiln pads to the longest too).
    emb = model.encode(SENTENCES, batch_size=3, convert_to_numpy=True)
    out = {
        "made_by": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "ids": tok["input_ids"],
        "embeddings": [[float(f"{x:.8g}") for x in row] for row in emb.tolist()],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}: {len(SENTENCES)} sentences, {emb.shape[1]} values each", file=sys.stderr)


if __name__ == "__main__":
    main()
