"""Zero-shot classification as the reference does it: one primer prompt per class, top-1."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def class_embeddings(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                     templates: Sequence[str], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Normalised text embedding per class; several templates are averaged (prompt ensemble)."""
    per_template = []
    for template in templates:
        prompts = [template.format(c) for c in classnames]
        chunks = [model.encode_text(tokenizer(prompts[i:i + batch_size]).to(device))
                  for i in range(0, len(prompts), batch_size)]
        per_template.append(F.normalize(torch.cat(chunks).float(), dim=-1))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


def top1_accuracy(image_features: torch.Tensor, class_features: torch.Tensor, targets: torch.Tensor) -> float:
    """Percentage of images whose most similar class embedding is their own class."""
    predictions = (image_features @ class_features.T).argmax(dim=-1)
    return 100.0 * (predictions.cpu() == targets.cpu()).float().mean().item()
