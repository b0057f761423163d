"""open_clip backbones: the shipped mini CLIP, the reference's named architectures, hub repositories.

Every backbone is an open_clip model plus its tokenizer and train/eval transforms. Weights come
from a local checkpoint file (open_clip weights, or a run's ``final_model.pt``), an open_clip
``local-dir`` folder, or open_clip's pretrained download and cache (``fif.models.weights``: a
cached copy is checked against its recorded SHA-256 and used without network; a missing one is
downloaded unless ``HF_HUB_OFFLINE=1``, which gives one line saying how to provide it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from collections.abc import Callable

import open_clip
import torch

from fif.errors import FifError
from fif.models.weights import HUB_PREFIX, NAMED_ARCHITECTURES, locate, weights_source
from fif.models.word_tokenizer import WordTokenizer

__all__ = ["MINI_CLIP", "NAMED_ARCHITECTURES", "Backbone", "build_backbone", "check_backbone", "mini_clip_dir"]

MINI_CLIP = "mini_clip"


@dataclass
class Backbone:
    """A CLIP model with the text and image preprocessing that belongs to it."""

    name: str
    model: open_clip.CLIP
    tokenizer: Callable[[list[str]], torch.Tensor]
    train_transform: Callable[[Any], torch.Tensor]
    eval_transform: Callable[[Any], torch.Tensor]


def mini_clip_dir() -> Path:
    """The shipped mini CLIP (open_clip ``local-dir`` layout + vocab.json)."""
    return Path(str(resources.files("fif.models") / "assets" / "mini_clip"))


def _tokenizer_for(local_dir: Path | None, arch: str) -> Callable[[list[str]], torch.Tensor]:
    if local_dir is not None and (local_dir / "vocab.json").exists():
        return WordTokenizer.load(local_dir / "vocab.json")
    return open_clip.get_tokenizer(f"local-dir:{local_dir}" if local_dir is not None else arch)


def _from_local_dir(name: str, local_dir: Path, pretrained: bool) -> Backbone:
    if not (local_dir / "open_clip_config.json").is_file():
        raise FifError(f"backbone folder {local_dir} has no open_clip_config.json (expected an open_clip local-dir)")
    model, train_tf, eval_tf = open_clip.create_model_and_transforms(f"local-dir:{local_dir}", load_weights=pretrained)
    return Backbone(name, model, _tokenizer_for(local_dir, name), train_tf, eval_tf)


def _from_named(name: str, cache_dir: str | None, pretrained: bool) -> Backbone:
    """A reference architecture with its pretrained tag's preprocessing; weights through the cache."""
    source = weights_source(name)
    pre = source.preprocess
    model, train_tf, eval_tf = open_clip.create_model_and_transforms(
        source.arch, pretrained=None, force_quick_gelu=bool(pre.get("quick_gelu", False)),
        image_mean=pre.get("mean"), image_std=pre.get("std"), image_interpolation=pre.get("interpolation"),
        image_resize_mode=pre.get("resize_mode"))
    if pretrained:
        _load_weights(model, locate(name, cache_dir).weights, name)
    return Backbone(name, model, open_clip.get_tokenizer(source.arch), train_tf, eval_tf)


def _from_hub(name: str, cache_dir: str | None, pretrained: bool) -> Backbone:
    """An ``hf-hub:ORG/REPO`` open_clip repository, built from its cached snapshot folder."""
    local = locate(name, cache_dir)  # the config is needed even for random weights
    assert local.config is not None
    # The snapshot folder holds the checked config and weights: open_clip's local-dir reads both.
    backbone = _from_local_dir(name, local.config.parent, pretrained)
    text_cfg = json.loads(local.config.read_text()).get("model_cfg", {}).get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):  # a Hugging Face tokenizer: open_clip fetches its files
        backbone.tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    return backbone


def _architecture(name: str, folder: Path | None, cache_dir: str | None, pretrained: bool) -> Backbone:
    if folder is not None:
        return _from_local_dir(name, folder, pretrained)
    if name == MINI_CLIP:
        return _from_local_dir(name, mini_clip_dir(), pretrained)
    if name.startswith("local-dir:"):
        return _from_local_dir(name, Path(name.removeprefix("local-dir:")), pretrained)
    if name.startswith(HUB_PREFIX):
        return _from_hub(name, cache_dir, pretrained)
    return _from_named(name, cache_dir, pretrained)


def _check_name(name: str) -> None:
    if name != MINI_CLIP and name not in NAMED_ARCHITECTURES and not name.startswith(("local-dir:", HUB_PREFIX)):
        known = ", ".join([MINI_CLIP, *NAMED_ARCHITECTURES, "local-dir:/path", "hf-hub:ORG/REPO"])
        raise FifError(f"experiment.backbone.name={name!r} is not a known backbone (expected one of: {known})")


def check_backbone(name: str, checkpoint: str | None, pretrained: bool = True) -> Path | None:
    """The checks of ``experiment.backbone`` that read no weights: a known name, a checkpoint that exists
    (for every backbone, the shipped mini CLIP too), and no weights file that ``pretrained=false``
    would ignore. Returns the checkpoint as a path (``~`` expanded), None without one."""
    _check_name(name)
    if checkpoint is None or str(checkpoint) == "":
        return None
    path = Path(str(checkpoint)).expanduser()
    if not path.exists():
        raise FifError(f"experiment.backbone.checkpoint={checkpoint} does not exist (expected a weights file "
                       f"(.pt/.bin/.safetensors, a run's final_model.pt) or an open_clip local-dir folder)")
    if path.is_file() and not pretrained:
        raise FifError(f"experiment.backbone.checkpoint={checkpoint} is a weights file, but "
                       f"experiment.backbone.pretrained=false builds random weights and would ignore it "
                       f"(set experiment.backbone.pretrained=true or experiment.backbone.checkpoint=null)")
    return path


def build_backbone(name: str, checkpoint: str | None = None, cache_dir: str | None = None,
                   pretrained: bool = True) -> Backbone:
    """Build a backbone by reference name (``openclip_vit_b32`` ...), ``mini_clip``, a local dir or a hub repo.

    ``checkpoint`` is a weights file (.pt/.bin/.safetensors, or a run's final_model.pt) or an
    open_clip local-dir folder; without one, named and hub backbones load open_clip's pretrained
    weights from ``cache_dir`` (None: open_clip's default cache), downloading them if missing.
    ``pretrained=False`` builds the architecture with random weights (profiling, no weights needed).
    """
    source = check_backbone(name, checkpoint, pretrained)
    folder = source if source is not None and source.is_dir() else None
    weights_file = source if source is not None and folder is None else None
    backbone = _architecture(name, folder, cache_dir, pretrained and weights_file is None)
    if pretrained and weights_file is not None:
        _load_weights(backbone.model, weights_file, name)
    return backbone


def _run_state_dict(checkpoint: Path, name: str) -> dict[str, torch.Tensor] | None:
    """The weights of a run's ``final_model.pt`` ({"model": state dict, "backbone": name}); None for others."""
    if checkpoint.suffix == ".safetensors":
        return None
    try:  # mmap: sniffing the layout costs no read of the tensors
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format torch file: open_clip's loader reads (or rejects) it
        return None
    if not (isinstance(saved, dict) and isinstance(saved.get("model"), dict) and "backbone" in saved):
        return None
    if saved["backbone"] != name:
        raise FifError(f"experiment.backbone.checkpoint={checkpoint} holds a {saved['backbone']} model, but "
                       f"experiment.backbone.name={name} (set the name the run used)")
    return saved["model"]


def _load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike, name: str) -> None:
    checkpoint = Path(checkpoint)
    try:
        state = _run_state_dict(checkpoint, name)
        if state is not None:
            model.load_state_dict(state, strict=True)
        else:
            open_clip.load_checkpoint(model, str(checkpoint))
    except FifError:
        raise
    except Exception as error:  # open_clip and torch raise many types; the user needs the file name
        detail = " ".join(str(error).split())[:300]
        raise FifError(f"could not load weights from {checkpoint}: {type(error).__name__}: {detail}") from None
