"""Models with the right shapes and no weights: plan a budget before downloading anything.

``meta_model`` builds an open_clip architecture on the meta device (open_clip's bundled configs,
``pretrained=None``: nothing is read or downloaded), and ``fake_clone`` turns any model (meta or
real) into a copy whose parameters are FakeTensors: they have shapes, dtypes and storages, so
FlopCounterMode and the saved-tensor hooks work, but no data, so ViT-g/14 (1.4B parameters)
profiles in seconds with no memory to speak of.
"""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import torch
from torch import nn

from fif.errors import FifError
from fif.models.backbone import MINI_CLIP, NAMED_ARCHITECTURES, mini_clip_dir


def open_clip_name(name: str) -> str:
    """A backbone name (``openclip_vit_b16``, ``mini_clip``, ``local-dir:/p``) or an open_clip
    architecture (``ViT-B-16``, ``convnext_base``) -> the name open_clip.create_model takes."""
    if name == MINI_CLIP:
        return f"local-dir:{mini_clip_dir()}"
    if name in NAMED_ARCHITECTURES:
        return NAMED_ARCHITECTURES[name][0]
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:")).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise FifError(f"backbone folder {folder} has no open_clip_config.json (expected an open_clip local-dir)")
        return f"local-dir:{folder}"
    if name in open_clip.list_models():
        return name
    known = ", ".join([MINI_CLIP, *NAMED_ARCHITECTURES, "local-dir:/path"])
    raise FifError(f"architecture {name!r} is not known: expected one of {known}, or an open_clip architecture "
                   f"such as ViT-B-16 or convnext_base (open_clip.list_models())")


def meta_model(name: str) -> nn.Module:
    """The architecture ``name`` on the meta device: shapes only, built in well under a second."""
    resolved = open_clip_name(name)
    try:
        with torch.device("meta"):
            return open_clip.create_model(resolved, pretrained=None, load_weights=False, device="meta")
    except Exception as error:  # open_clip raises many types for configs it cannot build
        raise FifError(f"could not build architecture {name!r} ({type(error).__name__}: {error})") from None


def fake_clone(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are fake tensors on ``device``.

    Must be called inside an active ``FakeTensorMode``. The copy shares nothing with ``model``;
    ``requires_grad`` flags and dtypes are kept, values are not.
    """
    memo: dict[int, object] = {}
    for parameter in model.parameters():
        fake = torch.empty(parameter.shape, dtype=parameter.dtype, device=device)
        memo[id(parameter)] = nn.Parameter(fake, requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty(buffer.shape, dtype=buffer.dtype, device=device)
    return copy.deepcopy(model, memo)


def input_batch(model: nn.Module, batch_size: int,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and token ids of the sizes ``model`` takes (its image size and context length)."""
    size = getattr(getattr(model, "visual", None), "image_size", None)
    context, vocab = getattr(model, "context_length", None), getattr(model, "vocab_size", None)
    if size is None or context is None or vocab is None:
        raise FifError(f"{type(model).__name__} does not say its image size, context length and vocabulary "
                       f"(expected an open_clip CLIP model)")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    images = torch.randn(batch_size, 3, height, width, device=device)
    texts = torch.randint(1, int(vocab), (batch_size, int(context)), device=device)
    return images, texts
