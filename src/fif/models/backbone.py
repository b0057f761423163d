"""open_clip backbones: the shipped mini CLIP and the reference's named architectures.

Every backbone is an open_clip model plus its tokenizer and train/eval transforms; nothing is
downloaded. Weights come from a local checkpoint file, an open_clip ``local-dir`` folder, or an
already-populated open_clip/Hugging Face cache (``cache_dir``, read offline).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch

from fif.errors import FifError
from fif.models.word_tokenizer import WordTokenizer

MINI_CLIP = "mini_clip"

# Reference backbone names -> (open_clip architecture, open_clip pretrained tag).
NAMED_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "openclip_vit_b32": ("ViT-B-32", "laion2b_s34b_b79k"),
    "openclip_vit_b16": ("ViT-B-16", "laion2b_s34b_b88k"),
    "openclip_vit_l14": ("ViT-L-14", "laion2b_s32b_b82k"),
    "openclip_vit_h14": ("ViT-H-14", "laion2b_s32b_b79k"),
    "openclip_vit_g14": ("ViT-g-14", "laion2b_s34b_b88k"),
    "openclip_vit_bigg14": ("ViT-bigG-14", "laion2b_s39b_b160k"),
    "openclip_convnext_base": ("convnext_base", "laion400m_s13b_b51k"),
    "openclip_convnext_base_w": ("convnext_base_w", "laion2b_s13b_b82k"),
    "openclip_convnext_large_d": ("convnext_large_d", "laion2b_s26b_b102k_augreg"),
}


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


def build_backbone(name: str, checkpoint: str | None = None, cache_dir: str | None = None,
                   pretrained: bool = True) -> Backbone:
    """Build a backbone by reference name (``openclip_vit_b32`` ...), ``mini_clip`` or a local dir.

    ``checkpoint`` is a weights file (.pt/.bin/.safetensors) or an open_clip local-dir folder;
    ``pretrained=False`` builds the architecture with random weights (profiling, no files needed).
    """
    if name == MINI_CLIP:
        local = Path(checkpoint) if checkpoint and Path(checkpoint).is_dir() else mini_clip_dir()
        backbone = _from_local_dir(name, local, pretrained and not (checkpoint and Path(checkpoint).is_file()))
        if pretrained and checkpoint and Path(checkpoint).is_file():
            _load_weights(backbone.model, checkpoint)
        return backbone
    if name.startswith("local-dir:"):
        return _from_local_dir(name, Path(name.removeprefix("local-dir:")), pretrained)
    if name not in NAMED_ARCHITECTURES:
        known = ", ".join([MINI_CLIP, *NAMED_ARCHITECTURES, "local-dir:/path"])
        raise FifError(f"experiment.backbone.name={name!r} is not a known backbone (expected one of: {known})")
    arch, tag = NAMED_ARCHITECTURES[name]
    if checkpoint and Path(checkpoint).is_dir():
        return _from_local_dir(name, Path(checkpoint), pretrained)
    model, train_tf, eval_tf = open_clip.create_model_and_transforms(arch, pretrained=None)
    if pretrained:
        if checkpoint:
            if not Path(checkpoint).is_file():
                raise FifError(f"experiment.backbone.checkpoint={checkpoint} does not exist")
            _load_weights(model, checkpoint)
        elif cache_dir:
            _load_from_cache(model, arch, tag, cache_dir)
        else:
            raise FifError(
                f"backbone {name} needs local weights: set experiment.backbone.checkpoint=/path/to/weights "
                f"or experiment.backbone.cache_dir=/path/to/open_clip_cache (or pretrained=false for random weights)")
    return Backbone(name, model, open_clip.get_tokenizer(arch), train_tf, eval_tf)


def _load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    try:
        open_clip.load_checkpoint(model, str(checkpoint))
    except Exception as error:  # open_clip raises many types; the user needs the file name
        raise FifError(f"could not load weights from {checkpoint}: {type(error).__name__}: {error}") from None


def _load_from_cache(model: torch.nn.Module, arch: str, tag: str, cache_dir: str) -> None:
    """Find open_clip's pretrained file in a local cache without touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    try:
        path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as error:
        raise FifError(f"no cached weights for {arch}/{tag} under {cache_dir} ({type(error).__name__}); "
                       f"set experiment.backbone.checkpoint to a local file instead") from None
    _load_weights(model, path)
