"""Issue 21's "must not change a number": digests of a set of runs, for side-by-side comparison.

    python benchmarks/equivalence.py --src PATH/TO/src --out digests.json [--only NAME ...]
    python benchmarks/equivalence.py --compare old.json new.json

``--src`` is put first on PYTHONPATH of every ``fif`` it starts (``git worktree add /tmp/old <commit>``
then ``--src /tmp/old/src`` measures an older tree). The runs: the default ``fif run``; a 3-task
run of each of the 13 methods; a budgeted LoRA run; a 2-process DDP run (torchrun, gloo). Each
digest is results.json without its timing fields (seconds, samples/s, timestamps, the run
folder) and the SHA-256 of every tensor of final_model.pt. ``--compare`` prints each run's verdict
and the first differing field.
"""
import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("finetune", "lora", "dora", "vera", "bitfit", "lnfit", "ewc", "si", "ema_paint", "ft_paint",
           "zs_paint", "offline_merge", "merge_grid")
THREE_TASKS = ("experiment.task.num=3", "experiment.task.n_samples=512")
RUNS: dict[str, tuple[str, ...]] = {"default": ()}
RUNS.update({f"method_{m}": (f"continual.method={m}", *THREE_TASKS) for m in METHODS})
RUNS["lora_budget"] = ("continual.method=lora", "experiment.task.num=3", "experiment.task.budget.unit=fullft_steps",
                       "experiment.task.budget.amount=4")
RUNS["ddp2"] = ("experiment.task.num=2", "experiment.task.n_samples=256", "experiment.task.batch_size=32")
TIMING = {"seconds", "samples_per_second", "started", "finished", "timestamp", "time", "wall_seconds", "run_dir",
          "folder", "duration", "elapsed"}


def _strip(node):
    """results.json without the fields that measure time or name the folder."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items()
                if k not in TIMING and not k.endswith("_seconds") and not k.endswith("per_second")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(name: str, overrides: tuple[str, ...], folder: Path, src: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1" if name == "ddp2" else os.environ.get(
        "OMP_NUM_THREADS", "2")}
    args = ["run", *overrides, f"log.folder={folder}", f"log.name={name}", "log.checkpoint=true", "log.progress=false"]
    if name == "ddp2":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                   f"--master_port={_free_port()}", "-m", "fif.cli", *args]
    else:
        command = [sys.executable, "-m", "fif.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    import torch

    run = folder / name
    results = _strip(json.loads((run / "results.json").read_text()))
    results.get("config", {}).get("log", {}).pop("folder", None)
    model = torch.load(run / "final_model.pt", weights_only=False, map_location="cpu")
    state = model.get("model", model)
    weights = {k: hashlib.sha256(v.detach().contiguous().cpu().numpy().tobytes()).hexdigest()
               for k, v in sorted(state.items())}
    return {"results": results, "weights": weights}


def _first_difference(a, b, path="") -> str | None:
    if type(a) is not type(b):
        return f"{path}: {a!r} vs {b!r}"[:300]
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'new' if key in b else 'old'}"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"[:300]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(REPO / "src"))
    parser.add_argument("--out")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        same = 0
        for name in old:
            if name not in new:
                continue
            diff = _first_difference(old[name], new[name])
            same += diff is None
            print(f"{name:24s} {'identical' if diff is None else 'DIFFERS ' + diff}")
        print(f"{same}/{len(set(old) & set(new))} runs identical")
        return 0 if same == len(set(old) & set(new)) else 1
    sys.path.insert(0, args.src)
    from fif.data.mini.build import build_datasets, default_root, pool_shards

    pool_shards(build_datasets(default_root(0)), 4)
    folder = Path(tempfile.mkdtemp(prefix="equivalence_"))
    digests = {}
    for name, overrides in RUNS.items():
        if args.only and name not in args.only:
            continue
        digests[name] = _run(name, overrides, folder, args.src)
        print(name, "error: " + digests[name]["error"][0] if "error" in digests[name] else "ok", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(digests, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
