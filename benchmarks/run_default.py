"""Time `fif run` on the default experiment and print where the time goes.

    python benchmarks/run_default.py [KEY=VALUE ...]

Prints wall time of the whole command, training throughput per task, evaluation time, and the
headline numbers (zero-shot vs final A_KA / A_ZS), so runs on different machines can be compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        start = time.time()
        subprocess.run([sys.executable, "-m", "fif.cli", "run", f"log.folder={folder}", "log.name=bench",
                        "log.progress=false", *overrides], check=True)
        wall = time.time() - start
        results = json.loads((Path(folder) / "bench" / "results.json").read_text())
    tasks = results["tasks"]
    train = sum(t["train_seconds"] for t in tasks)
    samples = tasks[-1]["samples_seen"]
    evaluation = sum(t["seconds"] - t["train_seconds"] for t in tasks)
    print(f"wall time of `fif run`: {wall:.1f} s (inside the run: {results['seconds']:.1f} s)")
    print(f"training: {samples} samples in {train:.1f} s = {samples / train:.0f} samples/s")
    print(f"evaluation after tasks: {evaluation:.1f} s total, {evaluation / len(tasks):.1f} s each")
    for key in ("zero_shot", "final"):
        r = results[key]
        print(f"{key:>9}: A_KA {r['A_KA']:.2f}  A_ZS {r['A_ZS']:.2f}  GM {r['geometric_mean']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
