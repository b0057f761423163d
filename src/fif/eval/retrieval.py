"""Image-text retrieval recall@k: the mean of image->text and text->image, as the reference.

Tie rule: items with equal similarity rank in index order (the lower index first). Identical
captions (MSCOCO, FSCOCO and the mini CAPTIONS set hold duplicates) score identically, and
``topk`` leaves their order to the kernel, so R@1 could move by points between CPU and CUDA. A
stable descending sort makes the ranking a function of the scores and indices alone.
"""

from __future__ import annotations

import torch

ROWS_PER_CHUNK = 1024  # queries ranked at once: bounds the sort's index tensor (rows x gallery x 8 bytes)


def top_k_stable(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's k best columns, equal scores in column order (the tie rule above)."""
    k = min(k, similarity.shape[1])
    chunks = [rows.sort(dim=1, descending=True, stable=True).indices[:, :k]
              for rows in similarity.split(ROWS_PER_CHUNK)]
    return torch.cat(chunks) if chunks else similarity.new_zeros((0, k), dtype=torch.long)


def recall_at_k(image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor,
                ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Percent recall@k per k; an image hits if any of its captions ranks in its top k."""
    similarity = image_features.float() @ text_features.float().T  # [images, texts]
    text_to_image = text_to_image.to(similarity.device)
    largest = max(ks)
    top_texts_all = top_k_stable(similarity, largest)  # [images, K]
    top_images_all = top_k_stable(similarity.T, largest)  # [texts, K]
    images = torch.arange(similarity.shape[0], device=similarity.device)
    result = {}
    for k in ks:
        image_hit = text_to_image[top_texts_all[:, :k]] == images[:, None]
        text_hit = top_images_all[:, :k] == text_to_image[:, None]
        result[k] = 100.0 * (image_hit.any(1).float().mean().item() + text_hit.any(1).float().mean().item()) / 2
    return result
