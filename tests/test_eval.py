import pytest
import torch
import torch.nn.functional as F

from fif.eval.metrics import geometric_mean
from fif.eval.retrieval import recall_at_k
from fif.eval.zero_shot import top1_accuracy


def test_recall_counts_both_directions_and_any_caption_of_an_image():
    images = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), dim=-1)
    # captions 0,1 belong to image 0; 2 to image 1; 3 to image 2 (but looks like image 0)
    texts = F.normalize(torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.0, 1.0], [1.0, 0.05]]), dim=-1)
    owner = torch.tensor([0, 0, 1, 2])
    recalls = recall_at_k(images, texts, owner, ks=(1, 3))
    # image->text R@1: img0 top text 3 (owner 2) miss; img1 top text 2 hit; img2 top text 0 or 1 miss -> 1/3
    # text->image R@1: t0->img0 hit, t1->img1 miss, t2->img1 hit, t3->img0 miss -> 2/4
    assert recalls[1] == pytest.approx(100 * (1 / 3 + 2 / 4) / 2)
    assert recalls[3] == pytest.approx(100.0)


def test_top1_accuracy_and_geometric_mean():
    classes = torch.eye(3)
    images = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    assert top1_accuracy(images, classes, torch.tensor([0, 1, 2, 2])) == pytest.approx(75.0)
    assert geometric_mean(64.0, 25.0) == pytest.approx(40.0)


def test_base_model_knows_the_pool_and_not_the_stream(mini_root):
    """The shipped base CLIP: real zero-shot skill on pretraining concepts, weak on the stream's."""
    from fif.data.format.fif_format import load_registry
    from fif.eval.metrics import summarize
    from fif.eval.suite import EvalSuite
    from fif.models.backbone import build_backbone

    backbone = build_backbone("mini_clip")
    specs = list(load_registry(mini_root / "datasets.json").values())
    scores = EvalSuite(mini_root, specs, backbone.eval_transform).evaluate(backbone.model, backbone.tokenizer,
                                                                           torch.device("cpu"))
    summary = summarize(scores, specs)
    assert summary["A_ZS"] > 60.0
    assert summary["A_ZS"] - summary["A_KA"] > 25.0
    assert scores["primcolours"].score > 80.0
    assert scores["swatches"].score < 40.0  # fine colour names were never seen


def test_template_ensemble_averages_normalised_prompt_embeddings(mini_root):
    from fif.eval.zero_shot import class_embeddings
    from fif.models.backbone import build_backbone

    backbone = build_backbone("mini_clip")
    device = torch.device("cpu")
    names = ["red", "blue"]
    a = class_embeddings(backbone.model, backbone.tokenizer, names, ["a photo of a {} shape."], device)
    b = class_embeddings(backbone.model, backbone.tokenizer, names, ["a {} circle"], device)
    both = class_embeddings(backbone.model, backbone.tokenizer, names, ["a photo of a {} shape.", "a {} circle"], device)
    assert torch.allclose(both, F.normalize(a + b, dim=-1), atol=1e-6)
    assert torch.allclose(both.norm(dim=-1), torch.ones(2))


def test_retrieval_ties_rank_the_lower_index_first_on_any_order_of_equal_scores():
    """Identical captions score identically; the tie rule (lower index first) decides, not the kernel."""
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])  # captions 0 and 1 identical
    owner = torch.tensor([1, 0, 1, 2])  # the duplicate caption 0 belongs to image 1, caption 1 to image 0
    recalls = recall_at_k(images, texts, owner, ks=(1, 2))
    # image->text R@1: img0 ties t0/t1 -> t0 (owner 1) miss; img1 -> t2 hit; img2 -> t3 hit: 2/3
    # text->image R@1: t0 -> img0 (owner 1) miss; t1 -> img0 hit; t2 -> img1 hit; t3 -> img2 hit: 3/4
    assert recalls[1] == pytest.approx(100 * (2 / 3 + 3 / 4) / 2)
    assert recalls[2] == pytest.approx(100.0)
    from fif.eval.retrieval import top_k_stable

    scores = torch.tensor([[0.5, 0.9, 0.5, 0.9, 0.1]] * 3)
    assert top_k_stable(scores, 4).tolist() == [[1, 3, 0, 2]] * 3


def test_retrieval_sets_keep_their_full_gallery_in_subset_evaluation(reference_dir):
    """FSCOCO's 1,777 test sketches share 112 targets: the class formula alone would keep 300 of them."""
    import json

    import numpy as np

    from fif.eval.subset import EvalSubsets

    info = json.loads((reference_dir / "info_samples" / "FSCOCO_test.json").read_text())
    targets = np.array([entry["target"] for entry in info.values()])
    assert (len(targets), len(np.unique(targets))) == (1777, 112)
    before = EvalSubsets({"fscoco": targets}, 0.1, seed=0)
    after = EvalSubsets({"fscoco": targets}, 0.1, seed=0, full=["fscoco"])
    assert len(before.indices["fscoco"]) == 300
    assert np.array_equal(after.indices["fscoco"], np.arange(1777))
