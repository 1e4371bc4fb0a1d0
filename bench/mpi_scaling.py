"""kiln's data-parallel training against itself in one process, measured in one run on the MNIST example.

    python3 bench/mpi_scaling.py [--epochs 2] [--ranks 2]

Builds kiln with the `mpi` feature (Open MPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev), then
trains examples/mnist/mnist.toml (batch 64, Adam, validation_split 0.1) three ways: one process on --ranks
threads, one process on one thread, and `mpirun -np RANKS` with one thread per rank (the same global batch
of 64, each rank taking its shard). Seconds per epoch are medians over --epochs epochs from each run's
log.jsonl; test accuracy is from the same run. On one machine the ranks share its cores, so this measures
what data-parallel training costs (the gradient sums through shared memory, smaller products per rank), not
what more machines would gain.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
KILN = os.path.join(ROOT, "target", "release", "kiln")


def run(cmd, threads, cwd):
    env = dict(os.environ, KILN_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ranks", type=int, default=2)
    a = ap.parse_args()
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "kiln-cli", "--features", "mpi"], cwd=ROOT)
    work = tempfile.mkdtemp(prefix="kiln-mpi-bench-")
    cfg = open(os.path.join(ROOT, "examples", "mnist", "mnist.toml")).read()
    cfg = cfg.replace('path = "../../data/mnist"', f'path = "{os.path.join(ROOT, "data", "mnist")}"')
    cfg = re.sub(r"(?m)^epochs = \d+", f"epochs = {a.epochs}", cfg)
    cfg = re.sub(r'(?m)^model = ".*"', 'model = "model.safetensors"', cfg)
    path = os.path.join(work, "mnist.toml")
    open(path, "w").write(cfg)
    n = a.ranks
    ways = [
        (f"1 process x {n} threads", [KILN], n),
        ("1 process x 1 thread", [KILN], 1),
        (f"mpirun -np {n} x 1 thread", ["mpirun", "--oversubscribe", "-np", str(n), "-x", "KILN_THREADS", KILN], 1),
    ]
    rows = []
    for i, (name, prefix, threads) in enumerate(ways):
        run_dir = os.path.join(work, f"run{i}")
        out = run(prefix + ["train", path, "--run-dir", run_dir, "--quiet"], threads, work)
        logs = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
        secs = statistics.median(e["seconds"] for e in logs)
        acc = re.search(r"accuracy: ([0-9.]+)", out).group(1)
        rows.append((name, secs, acc))
    base = rows[0][1]
    print(f"MNIST CNN, batch 64, {a.epochs} epochs, median seconds per epoch (one run, this machine)\n")
    vs = f"vs 1 process x {n}"
    print(f"| {'run':<26} | s/epoch | {vs} | test accuracy |")
    print(f"|{'-' * 28}|---------|{'-' * (len(vs) + 2)}|---------------|")
    for name, secs, acc in rows:
        print(f"| {name:<26} | {secs:7.2f} | {secs / base:{len(vs) - 1}.2f}x | {acc:>13} |")


if __name__ == "__main__":
    main()
