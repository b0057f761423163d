import open_clip
import pytest
import torch

from fif.errors import FifError
from fif.models.backbone import build_backbone, mini_clip_dir
from fif.models.word_tokenizer import WordTokenizer


def test_word_tokenizer_layout_matches_open_clip_conventions():
    tok = WordTokenizer.build(["a red circle", "a blue square, small"], context_length=8)
    ids = tok(["a red circle", "a purple circle"])
    assert ids.shape == (2, 8)
    assert ids[0, 0] == tok.index["<start>"]
    # open_clip pools the text at argmax(ids): that must be the end token, right after the words
    assert ids.argmax(dim=-1).tolist() == [4, 4]
    assert tok.index["<end>"] == tok.vocab_size - 1
    assert ids[1, 2] == tok.index["<unk>"]  # "purple" is unknown
    assert (ids[0, 5:] == 0).all()  # padding
    long = tok(" ".join(["red"] * 20))
    assert long[0, -1] == tok.index["<end>"]


def test_tokenizer_save_load_round_trip(tmp_path):
    tok = WordTokenizer.build(["a red circle"], context_length=6)
    tok.save(tmp_path / "vocab.json")
    again = WordTokenizer.load(tmp_path / "vocab.json")
    assert torch.equal(tok(["a red circle"]), again(["a red circle"]))


def test_mini_clip_is_a_real_open_clip_model_with_its_vocabulary():
    backbone = build_backbone("mini_clip")
    assert isinstance(backbone.model, open_clip.CLIP)
    assert backbone.model.token_embedding.num_embeddings == backbone.tokenizer.vocab_size
    image = torch.zeros(2, 3, 32, 32)
    features = backbone.model.encode_image(image)
    assert features.shape == (2, 128)
    text = backbone.model.encode_text(backbone.tokenizer(["a photo of a red circle", "a sprite of a heart."]))
    assert text.shape == (2, 128)
    for word in ("heart", "crimson", "striped", "circle"):
        assert word in backbone.tokenizer.index


def test_mini_clip_loads_bit_identically_through_local_dir_and_checkpoint_file():
    a = build_backbone("mini_clip").model.state_dict()
    b = build_backbone(f"local-dir:{mini_clip_dir()}").model.state_dict()
    c = build_backbone("mini_clip", checkpoint=str(mini_clip_dir() / "open_clip_model.safetensors")).model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key])


def test_random_weights_differ_from_the_shipped_ones():
    shipped = build_backbone("mini_clip").model.state_dict()
    random_init = build_backbone("mini_clip", pretrained=False).model.state_dict()
    assert not torch.equal(shipped["text_projection"], random_init["text_projection"])


def test_named_architecture_builds_with_random_weights_and_its_own_tokenizer():
    backbone = build_backbone("openclip_vit_b32", pretrained=False)
    assert backbone.model.visual.conv1.kernel_size == (32, 32)
    assert backbone.tokenizer(["a photo"]).shape == (1, 77)


def test_named_architecture_loads_a_local_checkpoint_file(tmp_path):
    source = build_backbone("openclip_vit_b32", pretrained=False).model
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    loaded = build_backbone("openclip_vit_b32", checkpoint=str(path)).model
    assert torch.equal(loaded.visual.conv1.weight, source.visual.conv1.weight)


@pytest.mark.parametrize("kwargs, culprit", [
    ({"name": "openclip_vit_b99"}, "openclip_vit_b99"),
    ({"name": "openclip_vit_b32"}, "experiment.backbone.checkpoint"),
    ({"name": "openclip_vit_b32", "checkpoint": "/nonexistent/w.pt"}, "/nonexistent/w.pt"),
])
def test_backbone_errors_name_the_culprit(kwargs, culprit):
    with pytest.raises(FifError, match=culprit.replace(".", r"\.")):
        build_backbone(**kwargs)
