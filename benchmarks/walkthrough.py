"""A new user's path, offline: download -> verify -> pool -> run, against a loopback mirror.

The README shows this path on a machine with network (the reference's Dropbox archives, GitHub
info files, LAION shards, open_clip weights). Here the same commands run against a real HTTP
server on 127.0.0.1 that serves the mini benchmark the way the reference serves FiF: one tar per
dataset (listed in a manifest CSV), info files from a separate base URL. The run at the end is a
real (short) `fif run` on the downloaded root with the shipped mini CLIP. Every command and its
output is printed, as the README's transcript.

    .venv/bin/python benchmarks/walkthrough.py [--tasks 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_download import LoopbackServer, Site  # noqa: E402  (the tests' loopback server)

from fif.data.mini.build import build_datasets, default_root, pool_shards  # noqa: E402


def _mirror(source: Path, work: Path) -> tuple[Site, list[str]]:
    """One tar per mini dataset (members <FOLDER>/...) and every info file, as URL paths."""
    registry = json.loads((source / "datasets.json").read_text())
    folders = [entry["folder"] for entry in registry.values()]
    site = Site()
    (work / "mirror").mkdir(parents=True)
    for folder in folders:
        archive = work / "mirror" / f"{folder}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(source / folder, arcname=folder)
        site.files[f"/archives/{folder}.tar"] = archive
    for info in sorted((source / "00_info").glob("*.json")):
        site.files[f"/info/{info.name}"] = info
    for names in sorted((source / "00_classnames").glob("*.json")):
        site.files[f"/info/{names.name}"] = names
    return site, folders


def _show(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run one command the way a user would, printing it and its output."""
    shown = " ".join(shlex.quote(part) for part in command)
    print(f"$ {shown}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    print((result.stdout + result.stderr).rstrip())
    print(f"[exit {result.returncode}, {time.perf_counter() - start:.1f} s]\n", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2, help="tasks of the final run")
    parser.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fif-walkthrough-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        source = build_datasets(default_root(0))
        shards = pool_shards(source, 2)
        site, folders = _mirror(source, work)
        with LoopbackServer(site) as url:
            manifest = work / "manifest.csv"
            manifest.write_text("# the mini benchmark's archives, served on 127.0.0.1\n"
                                + "".join(f"{url}/archives/{folder}.tar\n" for folder in folders))
            registry = work / "datasets.json"
            registry.write_text((source / "datasets.json").read_text())
            fif = [sys.executable, "-m", "fif.cli"]
            root = work / "fif_data"
            steps = [
                [*fif, "data", "download", str(root), "--manifest", str(manifest), "--registry", str(registry),
                 "--info-from", f"{url}/info", "--no-progress"],
                [*fif, "data", "verify", str(root), "--registry", str(registry), "--no-progress"],
                [*fif, "data", "pool", str(root / "pool"), "--adopt", str(shards[0].parent), "--no-progress"],
                [*fif, "run", "experiment=mini", f"experiment.dataset.root={root}",
                 f"experiment.dataset.registry={registry}", f"experiment.dataset.pretraining_pool={root / 'pool'}",
                 "experiment.dataset.pool_shards=2", f"experiment.task.num={args.tasks}",
                 f"log.folder={work / 'runs'}", "log.name=walkthrough", "log.progress=false"],
            ]
            for step in steps:
                if _show(step, work).returncode:
                    sys.exit(1)
        served = sum(site.served.values())
        print(f"loopback server: {len(site.requests)} requests, {served / 1e6:.1f} MB served")


if __name__ == "__main__":
    main()
