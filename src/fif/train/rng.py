"""Every global random-number state a run draws from, captured and restored for an exact resume.

Most randomness in a run is already a pure function of (seed, task, step): batch plans
(data/samples/mixture.py), captions and augmentations (data/samples/batches.py seeds per slot), the buffer's keys
(data/samples/buffer.py), merge draws (merge_stream.key_generator), the pool's shuffle (seeded per epoch).
What is left draws from the process-wide generators: dropout in adapters (torch), the base seed a
DataLoader takes from torch when evaluation uses workers, open_clip's init of a fresh adapter
(LoRA ``merge_at_task_end``), and anything a future method does with ``random`` or NumPy. A
checkpoint therefore holds the state of all four generators (Python, NumPy, torch CPU, every CUDA
device) at the moment it was taken, and a resume puts them back last, right before the run
continues, so whatever the resumed process drew while setting up no longer matters.

The states are stored as tensors and plain Python values, so ``torch.load(weights_only=True)``
reads them back (a NumPy array would need unpickling arbitrary objects).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from fif.errors import FifError


def capture_rng() -> dict[str, Any]:
    """The state of Python's ``random``, NumPy's legacy global generator, torch CPU and CUDA."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    cuda = ([state.clone() for state in torch.cuda.get_rng_state_all()]
            if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    return {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"bit_generator": numpy_state["bit_generator"],
                  "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_rng(state: dict[str, Any], strict: bool = True) -> str | None:
    """Put back what ``capture_rng`` saw. A CUDA state needs the same number of visible devices:
    a FifError when ``strict``, else the CUDA state is left as it is and a warning line returned."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state({"bit_generator": npy["bit_generator"],
                         "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": int(npy["pos"])},
                         "has_gauss": int(npy["has_gauss"]), "gauss": float(npy["gauss"])})
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None:
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible != len(cuda):
            message = (f"the checkpoint holds the random state of {len(cuda)} CUDA device(s) but {visible} "
                       f"are visible")
            if strict:
                raise FifError(f"{message}: resume on the same kind of machine (or set log.resume_force=true "
                               f"to resume anyway, inexactly)")
            return f"{message}: their random state is not restored (log.resume_force=true)"
        torch.cuda.set_rng_state_all(cuda)
    return None
