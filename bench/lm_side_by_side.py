"""GGUF language-model speed, kiln next to llama.cpp (through llama-cpp-python) in one run, on the same file:
prompt processing (one forward over PROMPT tokens) and greedy generation (NEW tokens one at a time through
the cache), as llama.cpp's llama-bench measures pp and tg. The best of three each, in --rounds turns that
alternate the two sides (the best kept, and the largest peak memory), both at --threads; kiln with its default
arithmetic (a prompt on f32 activations and dequantized weights, a new token on 16-bit activations) and with --fast8 (8-bit activations, as llama.cpp's kernels).

    python3 bench/lm_side_by_side.py [--threads 2] [--prompt 128] [--new 64] [--rounds 2] [MODEL.gguf ...]

Default models: models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf (tools/fetch_models.sh) and a Q8_0
copy of it that llama.cpp's own quantizer makes beside it the first time (llama_model_quantize, allowed to
requantize: the Q4_1 model's numbers in Q8_0 blocks, for the speed of Q8_0 products; no Q8_0 file of SmolLM2
is on PyPI).
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
DEFAULT_Q8 = DEFAULT.replace(".Q4_1.gguf", ".Q8_0.gguf")
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


def make_q8_0(src, dst):
    """dst: src requantized to Q8_0 by llama.cpp (every matrix Q8_0; norms stay f32)."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    tmp = dst + ".partial"
    if llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params)) != 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        sys.exit(f"llama.cpp could not quantize {src} to Q8_0")
    os.replace(tmp, dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="turns each side takes, alternating (best kept)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--make-q8", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        llama_child(a.models[0], a.threads, a.prompt, a.new)
        return
    if a.make_q8:
        make_q8_0(*a.models)
        return
    lmbench = os.path.join(ROOT, "target", "release", "lmbench")
    if not os.path.exists(lmbench):
        sys.exit("build kiln's side first: cargo build --release -p kiln-bench --bin lmbench")
    if not os.path.exists(VENV_PY):
        sys.exit("llama.cpp's side needs .bench-venv: python3 -m venv .bench-venv && "
                 ".bench-venv/bin/pip install llama-cpp-python==0.3.16 numpy")
    models = a.models or [DEFAULT, DEFAULT_Q8]
    if not a.models and not os.path.exists(DEFAULT_Q8):
        subprocess.check_call([VENV_PY, __file__, "--make-q8", DEFAULT, DEFAULT_Q8])
    env = dict(os.environ, KILN_THREADS=str(a.threads))
    def best(runs):
        """Each rate's best over the runs, the peak memory's largest."""
        return {k: (max(r[k] for r in runs) if isinstance(v, (int, float)) else v) for k, v in runs[0].items()}

    for model in models:
        kiln_runs, peer_runs = [], []
        # The two sides take turns, so that a drift in the machine's speed (a third between sittings on a
        # shared one) reaches both.
        for _ in range(a.rounds):
            kiln_runs.append(json.loads(subprocess.check_output([lmbench, model, str(a.prompt), str(a.new)], env=env,
                                                                text=True)))
            peer_runs.append(json.loads(subprocess.check_output(
                [VENV_PY, __file__, "--child", model, "--threads", str(a.threads), "--prompt", str(a.prompt), "--new",
                 str(a.new)], text=True).strip().splitlines()[-1]))
        kiln, peer = best(kiln_runs), best(peer_runs)
        fast8 = dict(kiln, prompt_tokens_per_s=kiln["fast8_prompt_tokens_per_s"],
                     generate_tokens_per_s=kiln["fast8_generate_tokens_per_s"])
        print(f"\n{os.path.basename(model)}, {a.threads} threads, prompt {a.prompt} tokens, {a.new} generated, "
              f"best of {a.rounds} alternating rounds of three\n")
        print("| | prompt tokens/s | generating tokens/s | peak RSS MiB | prompt, kiln / llama.cpp | "
              "generating, kiln / llama.cpp |")
        print("|---|---|---|---|---|---|")
        for name, r in [("kiln (default: 16-bit; prompts f32, or AMX tiles)", kiln),
                        ("kiln --fast8 (8-bit, as llama.cpp)", fast8), ("llama.cpp (llama-cpp-python)", peer)]:
            ratios = "| |" if r is peer else (
                f"| {r['prompt_tokens_per_s'] / peer['prompt_tokens_per_s']:.2f}x | "
                f"{r['generate_tokens_per_s'] / peer['generate_tokens_per_s']:.2f}x |")
            print(f"| {name} | {r['prompt_tokens_per_s']:,.0f} | {r['generate_tokens_per_s']:,.1f} | "
                  f"{r['peak_rss_mib']:,.0f} {ratios}")


if __name__ == "__main__":
    main()
