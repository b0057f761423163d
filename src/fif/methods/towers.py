"""Locked-image / locked-text training: freeze one tower of the CLIP model.

The reference (ExplainableML/fomo_in_flux) splits an open_clip model into a "backbone" (the image
tower, ``model.visual``) and a "head" (everything else: the text tower and the logit scale) and
freezes them with ``experiment.backbone.freeze_features`` and ``experiment.backbone.freeze_head``.
We keep its names and its split: on an open_clip model the image tower is every parameter under
``visual.``; the text tower is every other parameter, the temperature (``logit_scale``) included.
The flags apply to every gradient-trained method, as in the reference.
"""

from __future__ import annotations

import torch

from fif.errors import FifError

IMAGE_TOWER_PREFIX = "visual."


def is_image_tower(name: str) -> bool:
    """True for a parameter of the image tower (open_clip keeps it under ``visual``)."""
    return name.startswith(IMAGE_TOWER_PREFIX)


def freeze_towers(model: torch.nn.Module, lock_image: bool, lock_text: bool, method: str) -> None:
    """Apply ``experiment.backbone.freeze_features`` (image) / ``freeze_head`` (text) to ``requires_grad``."""
    if not (lock_image or lock_text):
        return
    if lock_image and not any(is_image_tower(n) for n, _ in model.named_parameters()):
        raise FifError(f"experiment.backbone.freeze_features=true but the model has no image tower "
                       f"(no parameter under {IMAGE_TOWER_PREFIX!r})")
    for name, parameter in model.named_parameters():
        if (lock_image and is_image_tower(name)) or (lock_text and not is_image_tower(name)):
            parameter.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise FifError(f"experiment.backbone.freeze_features={str(lock_image).lower()} and "
                       f"experiment.backbone.freeze_head={str(lock_text).lower()} leave nothing to train "
                       f"for continual.method={method}")
