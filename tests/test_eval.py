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
