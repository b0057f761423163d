"""Kill ``fif data download`` mid-transfer and resume it: how many bytes are fetched twice?

A manifest of many archives (default: the reference's 63 dataset folders, 8 MB each) is served
by the loopback HTTP server of tests/test_download.py (Range support, bytes counted per file,
no bandwidth limit). The download runs as a subprocess and is SIGKILLed once the server has sent
``--kill-at`` of all bytes; then the same command runs again to the end. Printed: total archive
size, bytes served by each run, bytes served twice (overhead), range requests of the rerun, wall
times, and whether every recorded SHA-256 equals the generated archive's and every file was
extracted.

    .venv/bin/python benchmarks/download.py [--archives 63] [--mb 8] [--kill-at 0.5] [--jobs 4]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_download import LoopbackServer, Site  # noqa: E402  (the test's server: one implementation)

from fif.data.fetch.info_sources import info_files_for  # noqa: E402
from fif.data.fetch.manifest import read_manifest  # noqa: E402
from fif.data.format.registry import builtin_registry  # noqa: E402


def _archive(path: Path, folder: str, size: int, seed: int) -> str:
    """A tar holding ``<FOLDER>/part-N.bin`` files of incompressible bytes; returns its SHA-256."""
    rng = __import__("random").Random(seed)
    with tarfile.open(path, "w") as tar:
        left, index = size, 0
        while left > 0:
            data = rng.randbytes(min(left, 2 << 20))
            member = tarfile.TarInfo(f"{folder}/part-{index:03d}.bin")
            member.size, member.mtime = len(data), 1_700_000_000
            tar.addfile(member, io.BytesIO(data))
            left, index = left - len(data), index + 1
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mirror(work: Path, archives: int, size: int) -> tuple[Site, dict[str, str], list[str]]:
    registry = {spec.folder: spec for spec in builtin_registry().values()}
    folders = [entry.folder for entry in read_manifest()][:archives]
    site, digests = Site(), {}
    (work / "mirror").mkdir(parents=True)
    for i, folder in enumerate(folders):
        path = work / "mirror" / f"{folder}.tar"
        digests[folder] = _archive(path, folder, size, seed=i)
        site.files[f"/scl/fi/b{i}/{folder}.tar"] = path
        for info in info_files_for(folder, registry[folder].splits):
            if info.required:
                site.files[f"/info/{info.remote}"] = b"{}"
    return site, digests, folders


def _command(dest: Path, manifest: Path, url: str, jobs: int) -> list[str]:
    return [sys.executable, "-m", "fif.cli", "data", "download", str(dest), "--manifest", str(manifest),
            "--info-from", f"{url}/info", "--no-verify", "--no-progress", "--jobs", str(jobs)]


def _archive_bytes(site: Site) -> int:
    return sum(count for path, count in site.served.items() if path.endswith(".tar"))


def _kill_when(process: subprocess.Popen, site: Site, threshold: int) -> float:
    start = time.perf_counter()
    while process.poll() is None and _archive_bytes(site) < threshold:
        time.sleep(0.005)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", type=int, default=63, help="number of archives (at most 63)")
    parser.add_argument("--mb", type=float, default=8.0, help="size of each archive in MB")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of all bytes served before SIGKILL")
    parser.add_argument("--jobs", type=int, default=4, help="fif data download --jobs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fif-download-bench-") as tmp:
        work = Path(tmp)
        site, digests, folders = _mirror(work, args.archives, int(args.mb * 1e6))
        total = sum(site.size(path) for path in site.files if path.endswith(".tar"))
        with LoopbackServer(site) as url:
            manifest = work / "manifest.csv"
            manifest.write_text("".join(f"{url}/scl/fi/b{i}/{f}.tar?rlkey=x\n" for i, f in enumerate(folders)))
            dest, command = work / "fif", _command(work / "fif", manifest, url, args.jobs)
            first = _kill_when(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                               site, int(args.kill_at * total))
            served_first, requests_first = _archive_bytes(site), len(site.requests)
            parts = sum(p.stat().st_size for p in (dest / ".downloads").glob("*.part"))
            start = time.perf_counter()
            rerun = subprocess.run(command, capture_output=True, text=True)
            second = time.perf_counter() - start
            ranged = [h for p, h in site.requests[requests_first:] if h and p.endswith(".tar")]
        recorded = json.loads((dest / ".downloads" / "checksums.json").read_text())
        checksums_ok = {f: recorded.get(f, {}).get("sha256") for f in folders} == digests
        extracted = sum(p.stat().st_size for f in folders for p in (dest / f).rglob("*") if p.is_file())
        served = _archive_bytes(site)
        print(f"archives: {len(folders)} x {args.mb:g} MB = {total / 1e6:.1f} MB; --jobs {args.jobs}; "
              f"SIGKILL after {args.kill_at:.0%} of the bytes")
        print(f"run 1 (killed): {served_first / 1e6:.1f} MB served in {first:.2f} s; "
              f".part files left: {parts / 1e6:.1f} MB")
        print(f"run 2 (resume): {(served - served_first) / 1e6:.1f} MB served in {second:.2f} s, "
              f"exit {rerun.returncode}; {len(ranged)} range requests")
        print(f"total served {served / 1e6:.2f} MB for {total / 1e6:.2f} MB of archives: "
              f"{(served - total) / 1e6:.3f} MB fetched twice ({(served - total) / total:.3%})")
        print(f"checksums recorded = generated: {checksums_ok}; extracted {extracted / 1e6:.1f} MB of files "
              f"({'all' if extracted == len(folders) * int(args.mb * 1e6) else 'NOT all'})")
        if rerun.returncode:
            print(rerun.stderr[-2000:])


if __name__ == "__main__":
    main()
