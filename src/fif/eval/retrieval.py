"""Image-text retrieval recall@k: the mean of image->text and text->image, as the reference."""

from __future__ import annotations

import torch


def recall_at_k(image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor,
                ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Percent recall@k per k; an image hits if any of its captions ranks in its top k."""
    similarity = image_features.float() @ text_features.float().T  # [images, texts]
    text_to_image = text_to_image.to(similarity.device)
    result = {}
    for k in ks:
        top_texts = similarity.topk(min(k, similarity.shape[1]), dim=1).indices  # [images, k]
        image_hit = (text_to_image[top_texts] == torch.arange(similarity.shape[0], device=similarity.device)[:, None])
        top_images = similarity.T.topk(min(k, similarity.shape[0]), dim=1).indices  # [texts, k]
        text_hit = top_images == text_to_image[:, None]
        result[k] = 100.0 * (image_hit.any(1).float().mean().item() + text_hit.any(1).float().mean().item()) / 2
    return result
