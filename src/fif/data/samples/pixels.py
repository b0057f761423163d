"""Split an image transform at its tensor conversion: uint8 crops from workers, normalised on the device.

open_clip's transforms end in ``ToTensor`` (uint8 -> float / 255) and ``Normalize``. Shipping the
float result from a worker to the GPU moves 4x the bytes of the uint8 crop (a batch of 512 ViT-B/16
crops: 308 MB vs 77 MB through shared memory, pinned memory and PCIe). So on a GPU the workers run
the PIL part and return uint8 tensors, and ``PixelFinish`` repeats ToTensor's scaling and
Normalize's arithmetic on the device: the same float operations in the same order, so on the CPU
the values are bit-identical to the whole transform (tests/test_loader.py checks this).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch
from torchvision import transforms as T

TO_TENSOR_TYPES = (T.ToTensor,)  # open_clip's MaybeToTensor subclasses ToTensor


@dataclass(frozen=True)
class PixelFinish:
    """ToTensor's ``/ 255`` and Normalize's ``(x - mean) / std`` on a uint8 batch (N, C, H, W)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        scaled = images.to(torch.get_default_dtype()).div(255)
        mean = torch.as_tensor(self.mean, dtype=scaled.dtype, device=scaled.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=scaled.dtype, device=scaled.device).view(-1, 1, 1)
        return scaled.sub_(mean).div_(std)


def split_transform(transform: Callable) -> tuple[Callable, PixelFinish] | None:
    """``(to_uint8, finish)`` with ``finish(stack(to_uint8(img)...)) == stack(transform(img)...)``, or None.

    Only a ``Compose`` that ends in ToTensor + Normalize (every open_clip transform) can be split;
    anything else keeps running whole in the workers.
    """
    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], TO_TENSOR_TYPES) or not isinstance(steps[-1], T.Normalize):
        return None
    normalize: T.Normalize = steps[-1]
    to_uint8 = T.Compose([*steps[:-2], T.PILToTensor()])
    return to_uint8, PixelFinish(tuple(float(m) for m in normalize.mean), tuple(float(s) for s in normalize.std))
