"""Streaming state-dict merges: N models read tensor by tensor, never N whole models in memory.

A model is given as a *source*: a state dict already in memory, a ``.safetensors`` file (read
one tensor at a time with ``safe_open``), a torch file (``torch.load(mmap=True)``: tensors stay on
disk until touched) or any ``StateSource``. The driver ``merge_states`` then works in one of two
ways:

* linear operators (interpolation, task_arithmetic) accumulate: the models are opened one after
  the other, each tensor is added to a running sum and dropped, so the memory held is the result
  plus one tensor, whatever N is;
* every other operator is computed per key in one or two passes over the models (ties family:
  sign votes, then the disjoint mean; model_stock: running sums of task and unit vectors): all
  sources are open (lazily; safetensors reads one tensor on demand) and each model's tensor of
  the key is read, used and dropped, so the memory held is the result plus a few tensors of one
  parameter, whatever N is;
* the ties family with ``prune_scope=model`` (the reference's ranking over the whole flattened
  task vector) first reads each model once more to rank its task vector's magnitudes over all the
  merged keys (one model part's magnitudes in memory at a time, 4 bytes per parameter), and with
  ``sign_tie=majority`` once more to count the elected signs over the part; then merges per key.

``save_state`` writes a state dict atomically as safetensors (what the merging methods use for
their task checkpoints).
"""

from __future__ import annotations

import os
import zlib
from contextlib import ExitStack
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fif.errors import FifError
from fif.methods.merge_ops import (LINEAR, NEEDS_BASE, TIES_FAMILY, Bounds, MergeRule, as_working, interpolate,
                                  lines_factor, magnitude_bounds, merge_loaded, normalise, sign_votes, tower_depths,
                                  working_dtype)
from fif.utils.io import atomic_write


class StateSource:
    """Read-only access to one model's tensors by name; open with ``with`` or ``open()``/``close()``."""

    name = "state dict"

    def open(self) -> StateSource:
        return self

    def close(self) -> None:
        pass

    def keys(self) -> list[str]:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def __enter__(self) -> StateSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemorySource(StateSource):
    def __init__(self, state: Mapping[str, torch.Tensor], name: str = "state dict") -> None:
        self.state, self.name = state, name

    def keys(self) -> list[str]:
        return list(self.state.keys())

    def get(self, key: str) -> torch.Tensor:
        return self.state[key].detach().cpu()


class SafetensorsSource(StateSource):
    def __init__(self, path: str | os.PathLike) -> None:
        self.path, self.name, self._file, self._keys = Path(path), str(path), None, set()

    def open(self) -> SafetensorsSource:
        from safetensors import safe_open

        if self._file is None:
            if not self.path.is_file():
                raise FifError(f"merge checkpoint {self.path} does not exist")
            self._file = safe_open(str(self.path), framework="pt", device="cpu")
            self._keys = set(self._file.keys())
        return self

    def close(self) -> None:
        self._file = None

    def keys(self) -> list[str]:
        return list(self.open()._file.keys())  # type: ignore[union-attr]

    def get(self, key: str) -> torch.Tensor:
        handle = self.open()._file
        if key not in self._keys:
            raise KeyError(key)
        return handle.get_tensor(key)  # type: ignore[union-attr]


class TorchFileSource(StateSource):
    """A ``torch.save`` file of a state dict (or of ``{"model": state_dict}``), memory-mapped."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path, self.name, self._state = Path(path), str(path), None

    def open(self) -> TorchFileSource:
        if self._state is None:
            if not self.path.is_file():
                raise FifError(f"merge checkpoint {self.path} does not exist")
            state = torch.load(self.path, map_location="cpu", mmap=True, weights_only=True)
            self._state = state["model"] if isinstance(state, dict) and isinstance(state.get("model"), dict) else state
        return self

    def close(self) -> None:
        self._state = None

    def keys(self) -> list[str]:
        return list(self.open()._state.keys())  # type: ignore[union-attr]

    def get(self, key: str) -> torch.Tensor:
        return self.open()._state[key]  # type: ignore[index]


SourceLike = StateSource | Mapping[str, torch.Tensor] | str | os.PathLike


def as_source(item: SourceLike) -> StateSource:
    if isinstance(item, StateSource):
        return item
    if isinstance(item, Mapping):
        return MemorySource(item)
    path = Path(item)
    return SafetensorsSource(path) if path.suffix == ".safetensors" else TorchFileSource(path)


def save_state(path: str | os.PathLike, state: Mapping[str, torch.Tensor]) -> Path:
    """Write ``state`` as safetensors, atomically (temporary file + rename)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda f: f.write(save(tensors)), binary=True)


def key_generator(seed: int, salt: int, key: str) -> torch.Generator:
    """A generator per (seed, salt, parameter): random operators do not depend on key order."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{salt}:{key}".encode()))


def _read(source: StateSource, key: str, shape: torch.Size | None = None) -> torch.Tensor:
    """``source[key]``; a missing key or a shape other than ``shape`` is a one-line FifError."""
    try:
        tensor = source.get(key)
    except KeyError:
        raise FifError(f"cannot merge {source.name}: it has no tensor {key!r}") from None
    if shape is not None and tensor.shape != shape:
        raise FifError(f"cannot merge {source.name}: {key} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    return tensor


def merge_states(models: Sequence[SourceLike], rule: MergeRule, weights: Sequence[float] | None = None,
                 base: SourceLike | None = None, keys: Sequence[str] | None = None,
                 salt: int = 0) -> dict[str, torch.Tensor]:
    """Merge ``models`` (oldest first) key by key; returns a CPU state dict in the models' dtypes.

    ``weights`` (normalised here; None: uniform) weight the models; ``base`` is theta_0 for
    task-vector operators and LiNeS; ``keys`` restricts the merge to some parameters (default: all
    of the base, else of the first model); ``salt`` varies the random draws (e.g. the task index).
    """
    if not models:
        raise FifError("nothing to merge: no models given")
    w = normalise(weights if weights is not None else [1.0] * len(models))
    if len(w) != len(models):
        raise FifError(f"{len(w)} merge weights for {len(models)} models")
    if base is None and (rule.method in NEEDS_BASE or rule.lines.enabled):
        what = f"{rule.method!r} with LiNeS" if rule.lines.enabled else repr(rule.method)
        raise FifError(f"merge operator {what} needs the base model theta_0")
    sources = [as_source(m) for m in models]
    with ExitStack() as stack:
        base_src = stack.enter_context(as_source(base)) if base is not None else None
        all_keys = (base_src or stack.enter_context(sources[0])).keys()
        keys = list(keys) if keys is not None else all_keys
        if rule.method in LINEAR:
            out = _merge_linear(sources, rule, w, base_src, keys)
        else:
            for source in sources:
                stack.enter_context(source)
            if rule.method in TIES_FAMILY and rule.prune_scope == "model":
                assert base_src is not None
                out = _merge_part(sources, rule, w, base_src, keys, salt)
            else:
                out = {key: _merge_key(sources, rule, w, base_src, key, salt) for key in keys}
        if rule.lines.enabled:
            assert base_src is not None
            depths = tower_depths(all_keys)
            for key, value in out.items():
                factor = lines_factor(key, rule.lines, depths)
                if factor != 1 and value.is_floating_point():
                    b = as_working(_read(base_src, key, value.shape))
                    out[key] = (b + (as_working(value) - b) * factor).to(value.dtype)
    return out


def _merge_key(sources: list[StateSource], rule: MergeRule, w: list[float], base_src: StateSource | None,
               key: str, salt: int, bounds: list[Bounds] | None = None, tie_sign: float | None = None) -> torch.Tensor:
    """One parameter: each model's tensor is read when the operator asks for it, then dropped."""
    newest = _read(sources[-1], key)
    if not newest.is_floating_point():
        return newest.clone()
    shape, dtype = newest.shape, newest.dtype
    del newest
    base_t = _read(base_src, key, shape) if base_src is not None else None
    generator = key_generator(rule.seed, salt, key) if rule.method in ("dare_ties", "random") else None
    load = lambda i: as_working(_read(sources[i], key, shape))  # noqa: E731
    return merge_loaded(rule, load, w, base_t, generator, bounds, tie_sign).to(dtype)


def _merge_part(sources: list[StateSource], rule: MergeRule, w: list[float], base_src: StateSource,
                keys: list[str], salt: int) -> dict[str, torch.Tensor]:
    """The ties family with prune_scope=model: each tau_i's magnitude bounds, and with sign_tie=majority
    the sign of zero votes, over all ``keys`` together (the reference's flattened task vectors)."""
    floats, wide = {}, False
    for key in keys:
        tensor = _read(base_src, key)
        if tensor.is_floating_point():
            floats[key] = tensor.shape
            wide = wide or working_dtype(tensor.dtype) == torch.float64
    dtype = np.float64 if wide else np.float32
    bounds = None if rule.method == "dare_ties" else [_part_bounds(s, rule, base_src, floats, dtype) for s in sources]
    tie_sign = None
    if rule.sign_tie == "majority":
        total = 0.0
        for key, shape in floats.items():
            generator = key_generator(rule.seed, salt, key) if rule.method == "dare_ties" else None
            votes = sign_votes(rule, lambda i, key=key, shape=shape: as_working(_read(sources[i], key, shape)), len(sources),
                               as_working(_read(base_src, key, shape)), generator, bounds)
            total += float(torch.sign(votes).sum())
        tie_sign = 1.0 if total > 0 else -1.0
    return {key: _merge_key(sources, rule, w, base_src, key, salt, bounds, tie_sign) for key in keys}


def _part_bounds(source: StateSource, rule: MergeRule, base_src: StateSource, floats: dict[str, torch.Size],
                 dtype: type) -> Bounds:
    """Magnitude bounds of one model's task vector ranked over every floating key of the part."""
    magnitudes = np.empty(sum(shape.numel() for shape in floats.values()), dtype=dtype)
    offset = 0
    for key, shape in floats.items():
        tau = as_working(_read(source, key, shape)) - as_working(_read(base_src, key, shape))
        magnitudes[offset:offset + tau.numel()] = tau.abs().reshape(-1).numpy()
        offset += tau.numel()
    return magnitude_bounds(rule, magnitudes)


def _merge_linear(sources: list[StateSource], rule: MergeRule, w: list[float], base_src: StateSource | None,
                  keys: list[str]) -> dict[str, torch.Tensor]:
    """interpolation / task_arithmetic, one model open at a time (running sum per key)."""
    acc: dict[str, torch.Tensor] = {}
    meta: dict[str, tuple[torch.Size, torch.dtype]] = {}
    tv = rule.method == "task_arithmetic"
    scale = rule.vector_scale(len(sources))
    for index, (source, weight) in enumerate(zip(sources, w)):
        last = index == len(sources) - 1
        if weight == 0 and not last:
            continue
        with source:
            for key in keys:
                tensor = _read(source, key, meta[key][0] if key in meta else None)
                meta.setdefault(key, (tensor.shape, tensor.dtype))
                if not tensor.is_floating_point():
                    if last:
                        acc[key] = tensor.clone()
                    continue
                if weight == 0:
                    continue
                if tv:
                    assert base_src is not None
                    tensor = as_working(tensor) - as_working(_read(base_src, key, tensor.shape))
                term = interpolate([tensor], [weight])
                acc[key] = term if key not in acc else acc[key].add_(term)
                del tensor
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        value = acc[key]
        if tv and value.is_floating_point():
            assert base_src is not None
            tau = value * scale if scale != 1 else value
            value = as_working(_read(base_src, key)) + tau
        out[key] = value.to(meta[key][1])
    return out
