"""``fif eval``: score any model zero-shot on a FiF data root, without training it.

Inside ``fif run`` evaluation only happens between tasks; this scores one model on its own: a
named backbone, an open_clip folder, a run's ``final_model.pt``, a resume checkpoint (the method
is rebuilt from the checkpoint's config and its state loaded, so a LoRA or merging run is scored
as the run scored it) or a run folder. The config is composed as ``fif run`` composes it; for a
run's file the run's own config is the base and the command line goes on top. Every number comes
from the run's own pieces (the evaluation suite of fif.train.components, EvalProtocol's fixed
subsets, fif.eval.metrics.summarize), so the same model and settings give the run's numbers exactly.
"""

from __future__ import annotations

import difflib
import logging
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Sequence

import torch
from tqdm import tqdm

from fif.config.layered import eval_config, read_config_file
from fif.data.format.fif_format import ADAPTATION, EVALUATION, DatasetSpec
from fif.data.format.registry import adapt_on, resolve_registry
from fif.data.format.storage import open_store
from fif.data.roots import data_root
from fif.errors import FifError
from fif.eval.metrics import summarize
from fif.eval.protocol import EvalProtocol
from fif.eval.suite import DatasetScore
from fif.methods import build_method
from fif.models.backbone import MINI_CLIP, NAMED_ARCHITECTURES, Backbone, build_backbone
from fif.models.weights import HUB_PREFIX
from fif.runtime.device import allow_tf32, resolve_device
from fif.runtime.distributed import SINGLE
from fif.config.settings import RunSettings
from fif.train.checkpoint import REQUIRED_KEYS, CheckpointError, list_checkpoints, read_checkpoint
from fif.train.components import DataSettings, evaluation_suite

Echo = Callable[[str], object]

CONFIG, NAMED, FOLDER, FINAL, CHECKPOINT = "config", "named", "local-dir", "final_model", "checkpoint"
ABSENT_SHOWN = 10  # absent datasets named in the note line
ROLE = {ADAPTATION: "KA", EVALUATION: "ZS"}  # which headline a dataset counts in


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


# ---------------------------------------------------------------------------- which model


@dataclass(frozen=True)
class ModelSource:
    """Where the scored weights come from (``--model``), known before the config is composed."""

    kind: str  # config | named | local-dir | final_model | checkpoint
    backbone: str | None = None  # the backbone name (None: the config's experiment.backbone.name)
    path: Path | None = None  # the file or folder read
    run_config: dict[str, Any] | None = None  # the run's config: the base the command line goes on
    state: dict[str, Any] | None = None  # a resume checkpoint's state

    def record(self, settings: RunSettings, argument: str | None) -> dict[str, Any]:
        """The ``model`` entry of the JSON: what was scored."""
        bb = settings.experiment.backbone
        weights = self.path if self.path is not None else bb.checkpoint
        out = {"argument": argument, "kind": self.kind, "backbone": self.backbone or str(bb.name),
               "weights": str(weights) if weights else None}
        if self.state is not None:
            out["position"] = {k: int(v) for k, v in self.state["position"].items()}
            out["method"] = settings.method
        return out


def _is_backbone_name(model: str) -> bool:
    return model == MINI_CLIP or model in NAMED_ARCHITECTURES or model.startswith(("local-dir:", HUB_PREFIX))


def _checkpoint_source(path: Path, state: dict[str, Any]) -> ModelSource:
    return ModelSource(CHECKPOINT, str(state["config"]["experiment"]["backbone"]["name"]), path, state["config"], state)


def _model_file(path: Path) -> ModelSource:
    """A run's final_model.pt ({model, backbone}) or a resume checkpoint; anything else is refused."""
    try:  # mmap: telling the two apart reads no tensor data
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a torch zip file at all: refused below like any other file
        saved = None
    if isinstance(saved, dict) and all(key in saved for key in REQUIRED_KEYS):
        try:
            return _checkpoint_source(path, read_checkpoint(path))
        except CheckpointError as error:
            raise FifError(f"--model {path}: the resume checkpoint is unusable ({error})") from None
    if isinstance(saved, dict) and isinstance(saved.get("model"), dict) and "backbone" in saved:
        config = path.parent / "config.yaml"  # inside its run folder: the run's settings
        return ModelSource(FINAL, str(saved["backbone"]), path, read_config_file(config) if config.is_file() else None)
    raise FifError(f"--model {path} is neither a run's final_model.pt (a dict with 'model' and 'backbone') nor a "
                   f"resume checkpoint (keys {', '.join(REQUIRED_KEYS)}); score plain open_clip weights with "
                   f"experiment.backbone.checkpoint={path}")


def _run_folder(path: Path, echo: Echo) -> ModelSource:
    """A run folder: its final_model.pt if there is one, else its newest usable resume checkpoint."""
    final = path / "final_model.pt"
    if final.is_file():
        return _model_file(final)
    for candidate in reversed(list_checkpoints(path / "checkpoints")):
        try:
            return _checkpoint_source(candidate, read_checkpoint(candidate))
        except CheckpointError as error:  # left in place: scoring never renames a run's files
            echo(f"skipping checkpoint {candidate} ({error})")
    raise FifError(f"--model {path}: the run folder has neither final_model.pt (log.checkpoint=true writes it) nor "
                   f"a usable resume checkpoint in {path / 'checkpoints'}")


def resolve_model(model: str | None, echo: Echo = _to_stderr) -> ModelSource:
    """What ``--model`` names: a backbone name, an open_clip folder, a run's file or a run folder."""
    if model is None:
        return ModelSource(CONFIG)
    if _is_backbone_name(model):
        return ModelSource(NAMED, model)
    path = Path(model).expanduser()
    if path.is_file():
        return _model_file(path)
    if (path / "open_clip_config.json").is_file():
        return ModelSource(FOLDER, f"local-dir:{path}", path)
    if (path / "config.yaml").is_file():
        return _run_folder(path, echo)
    what = "folder is neither an open_clip folder (open_clip_config.json) nor a run folder (config.yaml)" \
        if path.is_dir() else "does not exist and is not a named backbone"
    known = ", ".join([MINI_CLIP, *NAMED_ARCHITECTURES, "local-dir:/path", "hf-hub:ORG/REPO"])
    raise FifError(f"--model {model}: {what} (expected a backbone name ({known}), an open_clip folder, a run's "
                   f"final_model.pt, a resume checkpoint or a run folder)")


# ---------------------------------------------------------------------------- which config


# ---------------------------------------------------------------------------- which datasets


def _listed(value: Any) -> list[str] | None:
    """``evaluation.datasets``: null, one name, or a list of names."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        names = list(value)
        if names and all(isinstance(n, str) for n in names):
            return names
    raise FifError(f"evaluation.datasets={value!r} is not valid: expected null (every dataset in the root) or a "
                   f"list of dataset names, e.g. [digits,glyphs]")


def lookup_dataset(registry: dict[str, DatasetSpec], name: str) -> DatasetSpec:
    """A benchmark dataset by registry name or folder (case-insensitive); else close matches or the known names."""
    exact = {s.name: s for s in registry.values()} | {s.folder: s for s in registry.values()}
    loose = {key.lower(): spec for key, spec in exact.items()}
    spec = exact.get(name) or loose.get(name.lower())
    if spec is None:
        close = difflib.get_close_matches(name.lower(), list(loose), n=4, cutoff=0.6)
        hint = (f"close matches: {', '.join(dict.fromkeys(loose[c].name for c in close))}" if close else
                f"known: {', '.join(sorted(s.name for s in registry.values()))}")
        raise FifError(f"evaluation.datasets: {name!r} is not in the dataset registry ({hint})")
    if spec.role not in ROLE:
        raise FifError(f"evaluation.datasets: {spec.name!r} is {spec.role} in the registry, not an adaptation or "
                       f"evaluation dataset (make it one with experiment.dataset.adapt_on=[{spec.name}])")
    return spec


def _present(root: Path, spec: DatasetSpec, tar: bool) -> bool:
    try:
        open_store(root, spec.folder, tar, spec.name)  # the folder (or tar) test every reader applies
    except FifError:
        return False
    return True


def select_datasets(settings: RunSettings, root: Path,
                    registry: dict[str, DatasetSpec]) -> tuple[list[DatasetSpec], list[str]]:
    """The datasets to score (registry order) and the benchmark datasets absent from ``root``.

    ``evaluation.datasets`` null: every adaptation and evaluation dataset present in the root;
    a list: exactly those, each of which must be present.
    """
    benchmark = [s for s in registry.values() if s.role in ROLE]
    tar = settings.experiment.dataset.tar
    names = _listed(settings.evaluation.datasets)
    if names is None:
        present = [s for s in benchmark if _present(root, s, tar)]
        return present, [s.name for s in benchmark if s not in present]
    chosen = {lookup_dataset(registry, name).name for name in names}
    for spec in benchmark:
        if spec.name in chosen:
            try:
                open_store(root, spec.folder, tar, spec.name)
            except FifError as error:
                raise FifError(f"evaluation.datasets: {error}") from None
    return [s for s in benchmark if s.name in chosen], []


def absent_note(root: Path, absent: Sequence[str]) -> str:
    shown = ", ".join(absent[:ABSENT_SHOWN]) + (", ..." if len(absent) > ABSENT_SHOWN else "")
    return f"not in {root}: {len(absent)} dataset{'s' if len(absent) != 1 else ''} ({shown})"


# ---------------------------------------------------------------------------- model and scores


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip warns "Model initialized randomly" for an architecture built without weights; the
    weights (a checkpoint, a final_model.pt) are loaded right after, so the warning would mislead."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _checkpoint_model(source: ModelSource, settings: RunSettings,
                      device: torch.device) -> tuple[torch.nn.Module, Backbone]:
    """The method of a resume checkpoint, rebuilt from the config and loaded: its ``eval_model()``."""
    bb = settings.experiment.backbone
    folder = bb.checkpoint if bb.checkpoint and Path(bb.checkpoint).is_dir() else None  # an open_clip folder: the arch
    # Every weight is in the checkpoint: build the architecture only (no weights file or download needed).
    with _quiet_random_init():
        backbone = build_backbone(str(bb.name), folder, bb.cache_dir, pretrained=False)
    backbone.model.to(device)
    run_dir = source.path.parent.parent if source.path.parent.name == "checkpoints" else None
    method = build_method(settings, backbone.model, device, work_dir=run_dir / "method" if run_dir else None)
    try:
        method.load_state_dict(source.state["method"])
    except (RuntimeError, KeyError, TypeError) as error:
        detail = " ".join(str(error).split())[:200]
        raise FifError(f"--model {source.path}: its method state does not load into continual.method="
                       f"{settings.method} on {bb.name} ({type(error).__name__}: {detail})") from None
    return method.eval_model(), backbone


def build_model(source: ModelSource, settings: RunSettings,
                device: torch.device) -> tuple[torch.nn.Module, Backbone]:
    """The module to score and its backbone (tokenizer, evaluation transform)."""
    if source.kind == CHECKPOINT:
        return _checkpoint_model(source, settings, device)
    bb = settings.experiment.backbone
    if source.kind == CONFIG:
        name, weights, pretrained = str(bb.name), bb.checkpoint, bool(bb.pretrained)
    else:  # a named backbone with its own weights, an open_clip folder, or final_model.pt on its backbone
        name, weights, pretrained = str(source.backbone), str(source.path) if source.kind == FINAL else None, True
    loads_file = pretrained and bool(weights) and Path(weights).is_file()  # weights follow the architecture
    with _quiet_random_init() if loads_file else nullcontext():
        backbone = build_backbone(name, weights, bb.cache_dir, pretrained)
    backbone.model.to(device)
    return backbone.model, backbone


def score_datasets(run: RunSettings, root: Path, specs: list[DatasetSpec], model: torch.nn.Module,
                   backbone: Backbone, device: torch.device, subset: bool,
                   echo: Echo = _to_stderr) -> tuple[dict[str, DatasetScore], list[DatasetSpec]]:
    """Each dataset's score as the run's evaluation suite gives it, and the specs scored.

    One suite per dataset: the bar moves per dataset, and a preloaded benchmark holds one
    dataset's test images at a time. Scores are per dataset (subsets seeded by dataset name),
    so they equal those of the run's one suite over all datasets.
    """
    settings = DataSettings.from_settings(run)
    protocol = EvalProtocol(run.options, root, {s.name: s for s in specs}, echo)
    kept = protocol.keep(specs)  # validation mode may leave evaluation-only datasets out
    scores: dict[str, DatasetScore] = {}
    bar = tqdm(kept, desc="scoring", unit="dataset", disable=None if run.log.progress else True)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        suite = evaluation_suite(run, root, [spec], backbone, protocol, settings, SINGLE, device)
        chosen = protocol.subsets.indices if subset and protocol.subsets is not None else None
        scores.update(suite.evaluate(model, backbone.tokenizer, device, chosen))
    bar.close()
    return scores, kept


def evaluate_model(model: str | None, overrides: Sequence[str] = (), subset: bool = False,
                   echo: Echo = _to_stderr) -> dict[str, Any]:
    """Score ``model`` (``--model``; None: the config's backbone) on the config's data root.

    Returns ``{"model", "config", "datasets", "absent", "subset", "point"}``; ``point`` is
    fif.eval.metrics.summarize's block, as results.json holds it.
    """
    source = resolve_model(model, echo)
    settings = RunSettings.from_config(eval_config(overrides, source.run_config, subset))  # every key checked before any read
    device = resolve_device(settings.options.device)
    ds = settings.experiment.dataset
    root = data_root(ds, settings.mini_seed, echo)
    registry = adapt_on(resolve_registry(ds.registry, root), ds.adapt_on)
    specs, absent = select_datasets(settings, root, registry)
    if absent:
        echo(absent_note(root, absent))
    if not specs:
        raise FifError(f"no dataset of the registry is in {root} (expected ROOT/<FOLDER> folders; "
                       f"`fif data verify {root}` lists what is there)")
    scored_model, backbone = build_model(source, settings, device)
    allow_tf32(device, settings.compute.tf32)  # as the run computes on CUDA
    scores, scored = score_datasets(settings, root, specs, scored_model, backbone, device, subset, echo)
    rows = [{"name": s.name, "role": ROLE[s.role], "metric": scores[s.name].metric, "score": scores[s.name].score}
            for s in scored]
    return {"model": source.record(settings, model), "config": settings.public_dict(), "datasets": rows,
            "absent": absent, "subset": subset, "point": summarize(scores, scored)}


__all__ = ["ModelSource", "absent_note", "build_model", "evaluate_model", "lookup_dataset",
           "resolve_model", "score_datasets", "select_datasets"]
