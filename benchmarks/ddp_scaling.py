"""1 vs N processes (torchrun + DDP, gloo on CPU / nccl on GPU) at equal global batch: times and agreement.

    python benchmarks/ddp_scaling.py [--nproc 2] [--out /tmp/ddp_bench] [KEY=VALUE ...]

Prints end-to-end wall time, training seconds per step (from results.json's train_seconds), and the
largest weight difference between the runs' final models. Both runs use the same config; on a
2-core CPU machine each process gets one thread (OMP_NUM_THREADS=1) in both cases, so the ratio
shows what splitting the batch buys, not thread oversubscription.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int, folder: Path, name: str, overrides: list[str]) -> tuple[float, dict]:
    args = ["-m", "fif.cli", "run", *overrides, f"log.folder={folder}", f"log.name={name}", "log.progress=false",
            "log.checkpoint=true"]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_free_port()}", *args]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{nproc}-process run failed:\n{done.stderr[-3000:]}")
    return seconds, json.loads((folder / name / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--out", default="/tmp/fif_ddp_bench")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    folder = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for nproc in (1, args.nproc):
        seconds, results = run(nproc, folder, f"p{nproc}", args.overrides)
        steps = results["tasks"][-1]["samples_seen"] // results["config"]["experiment"]["task"]["batch_size"]
        train = sum(task["train_seconds"] for task in results["tasks"])
        rows.append((nproc, seconds, train / steps, results["final"]))
    one = torch.load(folder / "p1" / "final_model.pt", weights_only=False)["model"]
    many = torch.load(folder / f"p{args.nproc}" / "final_model.pt", weights_only=False)["model"]
    diff = max(float((one[k].float() - many[k].float()).abs().max()) for k in one)
    base = rows[0]
    for nproc, seconds, per_step, final in rows:
        print(f"{nproc} process(es): end-to-end {seconds:7.1f} s ({base[1] / seconds:4.2f}x), "
              f"train {per_step * 1000:7.1f} ms/step ({base[2] / per_step:4.2f}x), "
              f"final A_KA {final['A_KA']:.2f} A_ZS {final['A_ZS']:.2f}")
    print(f"largest |weight difference| between the final models: {diff:.2e}")


if __name__ == "__main__":
    main()
