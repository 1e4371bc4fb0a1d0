"""kiln serve's OpenAI-shaped routes with OpenAI's own Python client (the `openai` package), as an application
would call them: list the models, a chat completion whole and streamed, embeddings, and an API key.

    pip install openai && python3 tools/check_openai_client.py

Needs target/release/kiln (cargo build --release -p kiln-cli) and models/ (tools/fetch_models.sh). Prints
what each call returned and exits non-zero on the first mismatch.
"""
import os
import re
import subprocess
import sys
import tempfile

from openai import OpenAI, AuthenticationError, NotFoundError

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
KILN = os.path.join(ROOT, "target", "release", "kiln")
LM = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys.txt")
        with open(keys, "w") as f:
            f.write("sk-kiln-check\n")
        p = subprocess.Popen([KILN, "serve", f"smol={LM}", MINILM, "--port", "0", "--api-key-file", keys],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            addr = re.search(r"http://(\S+)", p.stdout.readline()).group(1)
            client = OpenAI(base_url=f"http://{addr}/v1", api_key="sk-kiln-check")
            ids = [m.id for m in client.models.list()]
            print("models:", ids)
            assert ids == ["smol", "all-MiniLM-L6-v2"], ids
            messages = [{"role": "system", "content": "You answer in one sentence."},
                        {"role": "user", "content": "What is the capital of France?"}]
            r = client.chat.completions.create(model="smol", messages=messages, temperature=0, max_tokens=30)
            text = r.choices[0].message.content
            print("chat:", repr(text), r.choices[0].finish_reason, r.usage)
            assert "Paris" in text, text
            pieces = [c.choices[0].delta.content or "" for c in
                      client.chat.completions.create(model="smol", messages=messages, temperature=0, max_tokens=30,
                                                     stream=True)]
            print("streamed:", len(pieces), "chunks")
            assert "".join(pieces) == text, ("".join(pieces), text)
            e = client.embeddings.create(model="all-MiniLM-L6-v2", input=["Where is my parcel?", "hello"])
            print("embeddings:", len(e.data), "vectors of", len(e.data[0].embedding))
            assert len(e.data) == 2 and len(e.data[0].embedding) == 384
            try:
                OpenAI(base_url=f"http://{addr}/v1", api_key="wrong").models.list()
                sys.exit("a wrong key was let in")
            except AuthenticationError as err:
                print("wrong key:", err.status_code)
            try:
                client.chat.completions.create(model="nope", messages=messages)
                sys.exit("an unknown model answered")
            except NotFoundError as err:
                print("unknown model:", err.status_code, err.body["message"] if isinstance(err.body, dict) else err.body)
            print("ok: the openai client works against kiln serve")
        finally:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
