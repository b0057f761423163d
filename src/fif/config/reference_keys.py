"""The reference's config key names, accepted as aliases of ours (docs/reference.md has the table).

A command pasted from the reference (ExplainableML/fomo_in_flux) uses its Hydra keys, e.g.
``experiment.dataset.path=/data`` or ``experiment.scheduler.warmup_perc=0.1``. Each is rewritten
to our key (with the value converted where the meaning differs) and one note line names the new
key. A reference key with no counterpart is accepted when its value is what we always do, and is
a one-line error otherwise, so a pasted command never silently means something else.

Hand-written because it is a table of facts about one other codebase; no library holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Iterable, Sequence

from fif.errors import FifError

MERGE_METHODS = ("ema_paint", "ft_paint", "zs_paint", "offline_merge")
DEFAULT_TRAIN_TRANSFORMS = ["RandomResizedCrop", "ToTensor", "Normalize"]
DEFAULT_TEST_TRANSFORMS = ["Resize", "CenterCrop", "ToTensor", "Normalize"]


@dataclass(frozen=True)
class Alias:
    """One reference key: our key (None: no counterpart), a value conversion, and what the note says."""

    ours: str | None
    convert: Callable[[Any], Any] | None = None
    accepted: Callable[[Any], bool] | None = None  # no counterpart: values that are what we always do
    why: str = ""


def _gpu_device(value: Any) -> str:
    ids = value if isinstance(value, list) else [value]
    if len(ids) != 1:
        raise FifError(f"gpu={value!r}: one process uses one GPU here; use torchrun for several (docs/distributed)")
    return f"cuda:{int(ids[0])}"


def _schedule_name(value: Any) -> str:
    return "constant" if value == "none" else str(value)


def _eval_batch(value: Any) -> Any:
    return "${experiment.task.batch_size}" if value == -1 else value


def _kv_only(value: Any) -> list[str]:
    return ["k", "v"] if value else ["q", "k", "v", "out"]


def _any(_: Any) -> bool:
    return True


def _equals(*allowed: Any) -> Callable[[Any], bool]:
    return lambda value: value in allowed


RENAMED: dict[str, str] = {
    "experiment.dataset.path": "experiment.dataset.root",
    "experiment.dataset.pretraining_data_path": "experiment.dataset.pretraining_pool",
    "experiment.task.data_mixture.pretraining": "experiment.dataset.data_mixture.pretraining",
    "experiment.task.data_mixture.update": "experiment.dataset.data_mixture.update",
    "experiment.task.data_mixture.buffer": "experiment.dataset.data_mixture.buffer",
    "experiment.scheduler.warmup_perc": "experiment.scheduler.warmup",
    "experiment.scheduler.cooldown_perc": "experiment.scheduler.cooldown",
    "experiment.scheduler.cosine_lr_mul": "experiment.scheduler.min_lr_ratio",
    "experiment.evaluation.validate_on_subset": "evaluation.validate_on_subset",
    "zeroshot_only": "evaluation.zero_shot_only",
}

ALIASES: dict[str, Alias] = {key: Alias(ours) for key, ours in RENAMED.items()}
ALIASES.update({
    "gpu": Alias("device", _gpu_device),
    "experiment.evaluation.batch_size": Alias("evaluation.batch_size", _eval_batch,
                                              why="-1: the training batch size"),
    "experiment.scheduler.name": Alias("experiment.scheduler.name", _schedule_name,
                                       why="the reference's 'none' is our 'constant'"),
    # Keys whose only value here is the reference's default (or that change nothing we compute).
    "experiment.type": Alias(None, accepted=_equals("class_incremental"), why="streams are class-incremental"),
    "experiment.training": Alias(None, accepted=_equals("contrastive"), why="training is CLIP's contrastive loss"),
    "experiment.mix_mode": Alias(None, accepted=_any, why="unused by the reference's FiF runs"),
    "experiment.mix_tasks": Alias(None, accepted=_any, why="unused by the reference's FiF runs"),
    "experiment.backbone.head": Alias(None, accepted=_equals("default"), why="CLIP's own text tower is the head"),
    "experiment.backbone.half_precision": Alias(
        None, accepted=_equals(True), why="CUDA runs always use bf16 autocast (the reference's AMP); CPU runs fp32"),
    "experiment.dataset.resize": Alias(None, accepted=_equals(224, -1),
                                       why="images are resized by the backbone's own open_clip transform (224)"),
    "experiment.dataset.img_size": Alias(None, accepted=_equals(224, -1),
                                         why="the crop size is the backbone's open_clip image size (224)"),
    "experiment.dataset.train_transforms": Alias(None, accepted=_equals(DEFAULT_TRAIN_TRANSFORMS),
                                                 why="training uses open_clip's RandomResizedCrop + Normalize"),
    "experiment.dataset.test_transforms": Alias(None, accepted=_equals(DEFAULT_TEST_TRANSFORMS),
                                                why="evaluation uses open_clip's Resize + CenterCrop + Normalize"),
    "experiment.dataset.full_tar_preload": Alias(None, accepted=_equals(False), why="tar mode reads members lazily"),
    "experiment.dataset.merge": Alias(None, accepted=_equals("none"), why="datasets are never merged"),
    "experiment.buffer.size": Alias(
        None, accepted=_any, why="the reference's FiF buffer holds every earlier sample whatever its size "
                                 "(ours: experiment.dataset.buffer.policy=all; reservoir/class_balanced take a size)"),
    "experiment.buffer.batch_size": Alias(None, accepted=_equals(-1), why="the buffer's share is data_mixture.buffer"),
    "experiment.buffer.with_transform": Alias(None, accepted=_equals(False), why="buffer samples are re-augmented"),
    "experiment.task.num_samples_per_task": Alias(None, accepted=_equals(None), why="n_samples sets the task size"),
    "experiment.task.adapt_num_if_needed": Alias(None, accepted=_any, why="tasks never exceed the stream"),
    "experiment.task.n_warmup_samples": Alias(None, accepted=_equals(0), why="no warm-up task"),
    "experiment.task.mode": Alias(None, accepted=_equals("shuffle"), why="task samples are drawn shuffled"),
    "experiment.task.gap_samples": Alias("evaluation.gap_samples"),
    "experiment.task.eval_every_n_samples": Alias("evaluation.every_n_samples"),
    "experiment.optimizer.name": Alias(None, accepted=_equals("adamw"), why="the optimizer is AdamW"),
    "experiment.optimizer.momentum": Alias(None, accepted=_any, why="AdamW has no SGD momentum"),
    "experiment.optimizer.nesterov_momentum": Alias(None, accepted=_any, why="AdamW has no SGD momentum"),
    "experiment.optimizer.scaled_learning_rate": Alias(None, accepted=_equals(False), why="lr is used as given"),
    "experiment.optimizer.loss": Alias(None, accepted=_equals("clip"), why="the loss is CLIP's contrastive loss"),
    "experiment.optimizer.label_smoothing": Alias(None, accepted=_equals(0, 0.0), why="no label smoothing"),
    "experiment.optimizer.clip_temperature": Alias(None, accepted=_equals("learnable"),
                                                   why="the temperature is learned (clamped as open_clip does)"),
    "experiment.scheduler.multistep_milestones": Alias(None, accepted=_any, why="no multistep schedule"),
    "experiment.scheduler.multistep_scale": Alias(None, accepted=_any, why="no multistep schedule"),
    "experiment.evaluation.task_metrics": Alias(None, accepted=_any, why="every metric is always computed"),
    "experiment.evaluation.total_metrics": Alias(None, accepted=_any, why="every metric is always computed"),
    "experiment.evaluation.additional_datasets": Alias(
        None, accepted=_any, why="every dataset of the registry is scored; A_ZS is the mean over its 22 "
                                 "evaluation datasets (the reference presets' additional_datasets)"),
    "experiment.evaluation.eval_iter": Alias(None, accepted=_equals(-1), why="evaluation sets are read whole"),
    "experiment.evaluation.every_nth_task": Alias(None, accepted=_equals(-1), why="every task is evaluated"),
    "verbosity": Alias(None, accepted=_any, why="progress bars: log.progress"),
    "log.id": Alias(None, accepted=_any, why="a W&B run id is chosen by W&B"),
    "log.checkpoint_each_task": Alias(None, accepted=_any, why="resume checkpoints: log.keep_checkpoints"),
    "log.checkpoint_no_recovery": Alias(None, accepted=_any, why="resume checkpoints: log.keep_checkpoints"),
    "log.checkpoint_full": Alias(None, accepted=_any, why="resume checkpoints hold the whole state"),
    "log.full_replication": Alias(None, accepted=_any, why="runs are exactly reproducible by seed"),
    "continual.hook_to": Alias(None, accepted=_equals([]), why="methods hook into the whole model"),
    "continual.ewc.fim_avg": Alias(None, accepted=_equals("batch"), why="the Fisher is a batch-gradient Fisher"),
    "continual.bitfit.bias_select": Alias(None, accepted=_equals("all"), why="BitFit trains every bias"),
    "continual.lnfit.ln_select": Alias(None, accepted=_equals("all"), why="LNFit trains every LayerNorm"),
})
for _method in ("lora", "dora", "vera"):
    ALIASES[f"continual.{_method}.kv_only"] = Alias(f"continual.{_method}.attention", _kv_only,
                                                    why="kv_only=true is attention=[k,v]")
    ALIASES[f"continual.{_method}.backbone_block_idcs"] = Alias(
        None, accepted=_equals([]), why=f"blocks: continual.{_method}.blocks (all blocks of both towers)")
    ALIASES[f"continual.{_method}.head_block_idcs"] = Alias(
        None, accepted=_equals([]), why=f"blocks: continual.{_method}.blocks (all blocks of both towers)")
for _method in ("lora", "dora", "vera", "bitfit", "lnfit"):
    ALIASES[f"continual.{_method}.tune_logit_scale"] = Alias(None, accepted=_equals(False),
                                                             why="the logit scale is not trained by this method")


@dataclass(frozen=True)
class Translated:
    """Our (key, value) pairs and one note per reference key met."""

    pairs: list[tuple[str, Any]]
    notes: list[str]


# Whole blocks of the reference's methods that have no counterpart here (continual.method=NAME is refused).
UNAVAILABLE_BLOCKS = {"continual.bic.": "no BiC method here", "continual.galore.": "no GaLore method here",
                      "continual.joint.": "no joint-training method here"}


def alias_for(key: str) -> Alias | None:
    """The alias of a reference key, or None for a key of ours (or an unknown one)."""
    if key in ALIASES:
        return ALIASES[key]
    for prefix, why in UNAVAILABLE_BLOCKS.items():
        if key.startswith(prefix):
            return Alias(None, accepted=_any, why=why)
    return None


def alias_table() -> str:
    """The alias table as Markdown (docs/reference.md embeds it; a test keeps the two equal)."""
    rows = ["| reference key | our key | note |", "|---|---|---|"]
    for key, alias in ALIASES.items():
        ours = f"`{alias.ours}`" if alias.ours else "(none: accepted, ignored)"
        rows.append(f"| `{key}` | {ours} | {alias.why} |")
    for prefix, why in UNAVAILABLE_BLOCKS.items():
        rows.append(f"| `{prefix}*` | (none: accepted, ignored) | {why} |")
    return "\n".join(rows)


def translate_pairs(pairs: Iterable[tuple[str, Any]]) -> Translated:
    """Reference (key, value) pairs -> ours; a refused value is a one-line FifError naming the key.

    Merging keys are converted together (fif.config.reference_merge_keys: a part's operator decides which
    of its sub-blocks count) and come last.
    """
    from fif.config.reference_merge_keys import is_merge_key, translate_merge

    pairs = list(pairs)
    merging, notes = translate_merge([(k, v) for k, v in pairs if is_merge_key(k, v)], pairs)
    out: list[tuple[str, Any]] = []
    for key, value in (pair for pair in pairs if not is_merge_key(*pair)):
        alias = alias_for(key)
        if alias is None:
            out.append((key, value))
            continue
        if alias.ours is None:
            if not alias.accepted(value):
                raise FifError(f"{key}={_render(value)} (a reference key) has no counterpart here: {alias.why}")
            notes.append(f"note: {key} is a reference key with no counterpart, ignored ({alias.why})")
            continue
        converted = alias.convert(value) if alias.convert else value
        out.append((alias.ours, converted))
        if alias.ours == key and converted == value:
            continue  # our key too, same meaning for this value: nothing to say
        shown = f"{alias.ours}={_render(converted)}" if alias.convert else alias.ours
        notes.append(f"note: {key} is the reference's name; using {shown}" + (f" ({alias.why})" if alias.why else ""))
    return Translated(out + merging, notes)


_OVERRIDE = re.compile(r"^(?P<prefix>\+{0,2}|~)(?P<key>[\w.]+)=(?P<value>.*)$", re.S)


def translate_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides with reference keys rewritten (a rename keeps the value's text as typed), and the notes."""
    from fif.config.reference_merge_keys import is_merge_key, translate_merge

    out: list[str] = []
    notes: list[str] = []
    merging: list[tuple[str, Any]] = []
    for override in overrides:
        match = _OVERRIDE.match(override)
        if match and is_merge_key(match.group("key"), _parse(match.group("value"))):
            merging.append((match.group("key"), _parse(match.group("value"))))
            continue
        alias = alias_for(match.group("key")) if match else None
        if alias is None:
            out.append(override)
            continue
        key, text = match.group("key"), match.group("value")
        value = _parse(text)
        result = translate_pairs([(key, value)])
        notes += result.notes
        for ours, converted in result.pairs:
            rendered = text if alias.convert is None else _render(converted)
            out.append(f"{match.group('prefix')}{ours}={rendered}")
    context = [(m.group("key"), _parse(m.group("value"))) for m in map(_OVERRIDE.match, overrides) if m]
    converted, merge_notes = translate_merge(merging, context)
    return out + [f"{key}={_render(value)}" for key, value in converted], notes + merge_notes


def _parse(text: str) -> Any:
    """An override's value as Hydra would read it (YAML scalars and [a,b] lists)."""
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def _render(value: Any) -> str:
    """A value as override text Hydra parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_render(v) for v in value) + "]"
    text = str(value)
    return text if re.fullmatch(r"[\w./:+-]+", text) else json.dumps(text).replace('"', "'")


if __name__ == "__main__":  # python -m fif.config.reference_keys: print the table for docs/reference.md
    print(alias_table())
