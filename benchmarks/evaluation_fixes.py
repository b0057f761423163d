"""Before / after numbers of issue 13's three evaluation fixes, on the same model and the same data.

    python benchmarks/evaluation_fixes.py [--reference-info PATH/TO/FSCOCO_test.json]

Prints (numbers, not a test), for the shipped mini CLIP on the mini benchmark:

1. Retrieval on its full gallery: with --reference-info, the gallery sizes and chance recall@5 of
   the reference's FSCOCO test file (the class formula cut its 1,777 items to 300); and CAPTIONS
   recall@5 on a 300-item gallery (what the formula gave FSCOCO, seeded class-balanced draw)
   against its whole gallery (CAPTIONS' own targets are distinct, so the formula never cut it).
2. Which datasets A_KA averages over: the zero-shot A_KA of a stream over SPRITES2D and COUNTING,
   averaged over every adaptation dataset of the registry (before) and over the stream's (after).
3. Ties in retrieval: CAPTIONS recall@1 / recall@5 ranked by ``torch.topk`` (before; the order of
   equal scores is the kernel's) and by the stable tie rule (after; fif.eval.retrieval).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F


def _topk_recall(image_features: torch.Tensor, text_features: torch.Tensor, owner: torch.Tensor) -> dict[int, float]:
    """The recall of fif.eval.retrieval before the tie rule: torch.topk orders equal scores as it likes."""
    similarity = image_features @ text_features.T
    top_texts, top_images = similarity.topk(5, dim=1).indices, similarity.T.topk(5, dim=1).indices
    images = torch.arange(similarity.shape[0])
    out = {}
    for k in (1, 5):
        image_hit = (owner[top_texts[:, :k]] == images[:, None]).any(1).float().mean().item()
        text_hit = (top_images[:, :k] == owner[:, None]).any(1).float().mean().item()
        out[k] = 100.0 * (image_hit + text_hit) / 2
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-info", type=Path, default=None, help="the reference's FSCOCO_test.json")
    args = parser.parse_args()

    from fif.data.format.registry import resolve_registry
    from fif.data.mini.build import build_datasets, default_root
    from fif.eval.metrics import summarize
    from fif.eval.retrieval import recall_at_k
    from fif.eval.subset import EvalSubsets, subset_size
    from fif.eval.suite import EvalSuite
    from fif.models.backbone import build_backbone

    root = build_datasets(default_root(0))
    registry = resolve_registry(str(root / "datasets.json"), root)
    specs = [s for s in registry.values() if s.role in ("adaptation", "evaluation")]
    backbone = build_backbone("mini_clip")
    model, device = backbone.model.eval(), torch.device("cpu")
    suite = EvalSuite(root, specs, backbone.eval_transform)
    captions = next(s for s in suite.sets if s.spec.kind == "retrieval")
    name = captions.spec.name

    print("1. retrieval on its full gallery (validate_on_subset=0.1)")
    old = EvalSubsets({name: [0] * len(captions.split)}, 0.1, 0).indices[name]  # 300 items, FSCOCO's old cut
    cut = suite.evaluate(model, backbone.tokenizer, device, {name: old})[name]
    whole = suite.evaluate(model, backbone.tokenizer, device)[name]
    print(f"   {name}: gallery {len(old)} -> {len(captions.split)} items; recall@5 {cut.score:.3f} -> "
          f"{whole.score:.3f} (chance {500 / len(old):.2f}% -> {500 / len(captions.split):.2f}%)")
    if args.reference_info:
        targets = [item["target"] for item in json.loads(args.reference_info.read_text()).values()]
        before = subset_size(len(targets), len(set(targets)), 0.1)
        print(f"   FSCOCO (reference test file): {len(targets)} items, {len(set(targets))} distinct targets; gallery "
              f"{before} -> {len(targets)} items; chance recall@5 {500 / before:.2f}% -> {500 / len(targets):.2f}%")

    print("2. A_KA of a stream over SPRITES2D and COUNTING (zero-shot, mini CLIP)")
    scores = suite.evaluate(model, backbone.tokenizer, device)
    registry_wide = summarize(scores, specs)["A_KA"]
    streamed = summarize(scores, specs, knowledge={"sprites2d", "counting"})["A_KA"]
    adaptation = sum(not s.eval_only for s in specs)
    print(f"   A_KA over the registry's {adaptation} adaptation datasets {registry_wide:.3f} -> over the stream's 2 "
          f"{streamed:.3f} (sprites2d {scores['sprites2d'].score:.3f}, counting {scores['counting'].score:.3f})")

    print("3. ties in retrieval (full CAPTIONS gallery)")
    texts = [c for i in range(len(captions.split)) for c in captions.split.captions[i]]
    owner = torch.tensor([i for i in range(len(captions.split)) for _ in captions.split.captions[i]])
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(captions.images).float(), dim=-1)
        text_features = F.normalize(torch.cat([model.encode_text(backbone.tokenizer(texts[i:i + 256])).float()
                                               for i in range(0, len(texts), 256)]), dim=-1)
    duplicated = sum(n for n in Counter(texts).values() if n > 1)
    before, after = _topk_recall(image_features, text_features, owner), recall_at_k(image_features, text_features,
                                                                                      owner)
    print(f"   {len(texts)} captions, {len(set(texts))} distinct ({duplicated} share their text with another)")
    print(f"   recall@1 {before[1]:.3f} -> {after[1]:.3f}; recall@5 {before[5]:.3f} -> {after[5]:.3f} "
          "(torch.topk -> stable tie rule)")


if __name__ == "__main__":
    main()
