"""Zero-shot classification as the reference does it: one primer prompt per class, top-1, and the
reference's task-masked accuracy (each image scored among the classes of the task that brought its class)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def task_masked_accuracy(image_features: torch.Tensor, class_features: torch.Tensor, targets: torch.Tensor,
                         groups: Sequence[int | None]) -> float | None:
    """Top-1 among the classes of the same group (the task that brought the image's class), in percent.

    ``groups[c]``: the task of class ``c``, or None for a class no task brought (its images are left
    out). None when no image has a grouped class. The reference masks every logit outside the task's
    classes to -inf and takes the argmax; restricting the columns per group is the same computation.
    """
    logits = (image_features @ class_features.T).cpu()
    targets = targets.cpu()
    group_of = torch.tensor([-1 if g is None else int(g) for g in groups])
    image_groups = group_of[targets]
    correct = scored = 0
    for group in sorted(set(image_groups.tolist()) - {-1}):
        rows = (image_groups == group).nonzero().flatten()
        columns = (group_of == group).nonzero().flatten()
        predicted = columns[logits[rows][:, columns].argmax(dim=-1)]
        correct += int((predicted == targets[rows]).sum())
        scored += len(rows)
    return 100.0 * correct / scored if scored else None
