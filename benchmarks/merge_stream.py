"""Streaming offline merges: time and memory to merge N task checkpoints with each operator.

    python benchmarks/merge_stream.py [--models 30] [--backbone mini_clip] [--ops interpolation,ties,...]

Writes N perturbed copies of the backbone's weights as safetensors (what offline_merge keeps in
<run>/method), then merges them, each operator in a fresh process, and prints per operator: the
seconds, the peak growth of the process's anonymous memory during the merge (sampled every ms;
includes what the allocator keeps) in MiB and in model copies, against the N model copies a
load-everything merge would hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from fif.methods.merge_ops import OPERATORS, MergeRule

CHILD = """
import json, sys, threading, time
from fif.methods.merge_ops import MergeRule, scheme_weights
from fif.methods.merge_stream import merge_states
from safetensors.torch import load_file
sys.path.insert(0, {here!r})
from merge_stream import rss_anon_mb
args = json.loads(sys.argv[1])
base = load_file(args["base"])
start, peak, done = rss_anon_mb(), [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_anon_mb() - start); time.sleep(0.001)
thread = threading.Thread(target=sample); thread.start()
t0 = time.perf_counter()
merge_states(args["paths"], MergeRule(method=args["op"]), scheme_weights("linear", len(args["paths"])), base=base)
seconds = time.perf_counter() - t0
done.set(); thread.join()
print(json.dumps({{"seconds": seconds, "peak_mb": peak[0]}}))
"""


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--backbone", default="mini_clip")
    parser.add_argument("--ops", default=",".join(o for o in OPERATORS if o != "slerp"))
    args = parser.parse_args()

    from fif.methods.merge_stream import save_state
    from fif.models.backbone import build_backbone

    theta0 = {k: v.detach().clone() for k, v in build_backbone(args.backbone).model.state_dict().items()}
    model_mb = sum(v.nbytes for v in theta0.values()) / 2**20
    with tempfile.TemporaryDirectory() as folder:
        base = save_state(Path(folder) / "theta0.safetensors", theta0)
        paths = []
        for i in range(args.models):
            g = torch.Generator().manual_seed(i)
            paths.append(str(save_state(Path(folder) / f"task_{i:04d}.safetensors",
                                        {k: v + 1e-2 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                                         for k, v in theta0.items()})))
        print(f"{args.models} checkpoints of {args.backbone} ({model_mb:.1f} MiB each; all in memory: "
              f"{args.models * model_mb:.0f} MiB), linear weights, torch threads {torch.get_num_threads()}")
        for op in args.ops.split(","):
            MergeRule(method=op).validate("--ops")
            child = CHILD.format(here=str(Path(__file__).parent))
            payload = json.dumps({"op": op, "paths": paths, "base": str(base)})
            out = subprocess.run([sys.executable, "-c", child, payload], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peak = r["peak_mb"]
            print(f"  {op:17s} {r['seconds']:7.2f} s   peak +{peak:7.1f} MiB ({peak / model_mb:5.2f} models)")


if __name__ == "__main__":
    main()
