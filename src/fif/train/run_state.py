"""What a run must carry across a kill, gathered into one checkpoint dict and put back.

Where the state of a run lives (everything else is rebuilt from the config at start-up and is a
pure function of it):

- the method (``method.state_dict()``): model, optimizer mid-task, step in the task, and the
  method's own state (EWC's Fisher and anchor, SI's importances, merging's theta_0 / running merges
  / task-checkpoint names, adapters inside the model);
- the replay buffer (``ReplayBuffer.state_dict``);
- the pretraining pool's stream position (``PoolStream.state_dict``: epoch, samples consumed,
  raw position inside the epoch's shuffled order, skipped counters);
- the loop: results so far, samples seen, the corrupt-sample counters of the batch builder and
  the evaluation suite, the budget the run started with (steps per task, GFLOPs per sample), and
  the compute time spent (so timing fields keep adding up);
- every global random state (``fif.train.rng``), restored last.

Everything is stored as tensors and plain Python values (results go through JSON, as they do to
results.json), so ``torch.load(weights_only=True)`` reads a checkpoint back.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from collections.abc import Mapping

from fif.data.samples.batches import BatchBuilder
from fif.data.samples.buffer import ReplayBuffer
from fif.data.samples.pool import PoolStream
from fif.eval.suite import EvalSuite
from fif.errors import FifError
from fif.methods.base import ContinualMethod
from fif.train.checkpoint import FORMAT, Position
from fif.train.rng import capture_rng, restore_rng


def plain(value: Any) -> Any:
    """``value`` as results.json holds it: JSON types only (numpy scalars and tuples made plain)."""
    return json.loads(json.dumps(value))


def gather_state(position: Position, config: dict[str, Any], method: ContinualMethod, buffer: ReplayBuffer,
                 pool: PoolStream | None, skipped: dict[str, Mapping[str, int]], results: dict[str, Any],
                 samples_seen: int, elapsed: float, task_elapsed: float, budget: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of a run at ``position``: everything ``restore_*`` needs to continue exactly.

    ``skipped`` holds the corrupt-sample counters of the batch builder and the evaluation suite
    (``{"builder": ..., "suite": ...}``). ``budget`` (steps per task, GFLOPs per sample) is what
    the run measured when it started: a
    resume keeps it even if a new measurement (e.g. of peak memory on a GPU) came out different.
    """
    return {
        "format": FORMAT,
        "position": position.as_dict(),
        "config": plain(config),
        "method": method.state_dict(),
        "buffer": buffer.state_dict(),
        "pool": pool.state_dict() if pool is not None else None,
        "loop": {"results": plain(results), "samples_seen": int(samples_seen), "elapsed": float(elapsed),
                 "task_elapsed": float(task_elapsed), "budget": plain(budget),
                 "skipped": {name: dict(counter) for name, counter in skipped.items()}},
        "rng": capture_rng(),
    }


def position_of(state: dict[str, Any]) -> Position:
    return Position(**{k: int(v) for k, v in state["position"].items()})


def restore_data(state: dict[str, Any], buffer: ReplayBuffer, pool: PoolStream | None, builder: BatchBuilder,
                 suite: EvalSuite) -> dict[str, Any]:
    """Put back buffer, pool position and corrupt-sample counters; return the loop's own state."""
    buffer.load_state_dict(state["buffer"])
    if (state["pool"] is None) != (pool is None):
        raise FifError("the checkpoint was written by a run " + ("without" if pool is not None else "with")
                       + " a pretraining pool (experiment.dataset.data_mixture.pretraining); resume with the "
                         "run's own mixture")
    if pool is not None:
        pool.load_state_dict(state["pool"])
    loop = state["loop"]
    builder.skipped = Counter(loop["skipped"]["builder"])
    suite.skipped = Counter(loop["skipped"]["suite"])
    return loop


def restore_method(state: dict[str, Any], method: ContinualMethod, strict_rng: bool = True) -> str | None:
    """Put back the method, then every random state (last: nothing may draw after it).

    Called at the point of the run where the checkpoint was taken: before ``begin_task`` for a
    checkpoint at a task's start, after it for one inside a task. Returns a warning line, if any.
    """
    method.load_state_dict(state["method"])
    return restore_rng(state["rng"], strict=strict_rng)
