"""GGUF language-model speed, kiln next to llama.cpp (through llama-cpp-python) in one run, on the same file:
prompt processing (one forward over PROMPT tokens) and greedy generation (NEW tokens one at a time through
the cache), as llama.cpp's llama-bench measures pp and tg. The best of three each, both at --threads.

    python3 bench/lm_side_by_side.py [--threads 2] [--prompt 128] [--new 64] [MODEL.gguf]

Default model: models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf (tools/fetch_models.sh).
llama-cpp-python runs in .bench-venv (`.bench-venv/bin/pip install llama-cpp-python==0.3.16`: it compiles
llama.cpp, minutes on two cores); kiln's side is target/release/lmbench (cargo build --release -p kiln-bench
--bin lmbench). Each side runs in its own process, so the peak RSS is its own.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VENV_PY = os.path.join(ROOT, ".bench-venv", "bin", "python")
DEFAULT = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
TEXT = "The history of the city begins with a small settlement on the river, where traders met to exchange "


def llama_child(model, threads, pp, tg):
    import resource

    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=pp + tg + 8, n_batch=pp,
                verbose=False)
    prompt = llm.tokenize((TEXT * (pp // 8 + 2)).encode(), add_bos=False)[:pp]
    best_pp = best_tg = float("inf")
    for _ in range(3):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        best_pp = min(best_pp, time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(tg):
            nxt = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))
            llm.eval([nxt])
        best_tg = min(best_tg, time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"prompt_tokens_per_s": len(prompt) / best_pp, "generate_tokens_per_s": tg / best_tg,
                      "peak_rss_mib": rss}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        llama_child(a.model, a.threads, a.prompt, a.new)
        return
    lmbench = os.path.join(ROOT, "target", "release", "lmbench")
    if not os.path.exists(lmbench):
        sys.exit("build kiln's side first: cargo build --release -p kiln-bench --bin lmbench")
    env = dict(os.environ, KILN_THREADS=str(a.threads))
    kiln = json.loads(subprocess.check_output([lmbench, a.model, str(a.prompt), str(a.new)], env=env, text=True))
    peer = json.loads(subprocess.check_output(
        [VENV_PY, __file__, "--child", a.model, "--threads", str(a.threads), "--prompt", str(a.prompt), "--new",
         str(a.new)], text=True).strip().splitlines()[-1])
    print(f"\n{os.path.basename(a.model)}, {a.threads} threads, prompt {a.prompt} tokens, {a.new} generated, "
          "best of three\n")
    print("| | prompt tokens/s | generating tokens/s | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, r in [("kiln", kiln), ("llama.cpp (llama-cpp-python)", peer)]:
        print(f"| {name} | {r['prompt_tokens_per_s']:,.0f} | {r['generate_tokens_per_s']:,.1f} | "
              f"{r['peak_rss_mib']:,.0f} |")
    print(f"| kiln / llama.cpp | {kiln['prompt_tokens_per_s'] / peer['prompt_tokens_per_s']:.2f}x | "
          f"{kiln['generate_tokens_per_s'] / peer['generate_tokens_per_s']:.2f}x | |")


if __name__ == "__main__":
    main()
