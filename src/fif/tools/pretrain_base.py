"""Pretrain the shipped mini CLIP on the mini benchmark's pretraining pool (``fif pretrain-base``).

This reproduces ``fif/models/assets/mini_clip``: it generates the pool, builds the word
vocabulary of the whole mini benchmark (so stream words exist as untrained tokens the base model
has never seen used), trains a small open_clip CLIP with the contrastive loss, and writes an
open_clip ``local-dir`` folder (config + safetensors weights + vocab.json) with a report of the
base model's zero-shot scores.
"""

from __future__ import annotations

import json
import random
import time
from functools import partial
from pathlib import Path

import open_clip
import torch
from tqdm import tqdm

from fif.data.format.fif_format import load_registry, read_split
from fif.data.mini.build import build_datasets, pool_shards
from fif.data.mini.render import IMAGE_SIZE
from fif.eval.suite import EvalSuite
from fif.models.word_tokenizer import WordTokenizer
from fif.optim.adamw import build_adamw
from fif.optim.schedules import learning_rate
from fif.optim.step import contrastive_step, step_losses
from fif.utils.io import atomic_write, atomic_write_json

MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 24, "width": 128, "heads": 4, "layers": 4},
}


def read_pool(shards: list[Path]) -> tuple[list, list[str]]:
    """All pool samples as (PIL images, captions); only this offline tool holds the pool in RAM."""
    import webdataset as wds

    images, captions = [], []
    for image, caption in wds.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False) \
            .decode("pil").to_tuple("png", "txt"):
        images.append(image.convert("RGB"))
        captions.append(caption)
    return images, captions


def benchmark_texts(root: Path) -> list[str]:
    """Every caption and primer prompt of every mini dataset (the vocabulary's source)."""
    texts = []
    for spec in load_registry(root / "datasets.json").values():
        for split in ("train", "test"):
            try:
                data = read_split(root, spec, split)
            except Exception:
                continue
            texts += [c for captions in data.captions for c in captions]
            texts += [spec.primer.format(c) for c in data.classnames]
    return texts


def mini_clip_no_decay(name: str, parameter: torch.nn.Parameter) -> bool:
    """The mini CLIP's rule (kept so it stays reproducible): decay only matrices that are not embeddings."""
    return not (parameter.ndim >= 2 and "embedding" not in name)


def build_model(captions: list[str], data_root: Path) -> tuple[open_clip.CLIP, WordTokenizer, dict]:
    """A fresh mini CLIP whose vocabulary covers the pool's captions and the whole mini benchmark."""
    tokenizer = WordTokenizer.build(captions + benchmark_texts(data_root), MODEL_CFG["text_cfg"]["context_length"])
    cfg = json.loads(json.dumps(MODEL_CFG))
    cfg["text_cfg"]["vocab_size"] = tokenizer.vocab_size
    return open_clip.CLIP(**cfg), tokenizer, cfg


def train(model: open_clip.CLIP, images: list, tokens: torch.Tensor, epochs: int, batch_size: int, lr: float,
          weight_decay: float, rng: random.Random) -> int:
    """Contrastive training, reshuffled every epoch, warmup + cosine; returns the steps taken."""
    train_tf = open_clip.image_transform(IMAGE_SIZE, is_train=True)
    loss_fn = open_clip.ClipLoss()
    optimizer = build_adamw(model.named_parameters(), lr, weight_decay, no_decay=mini_clip_no_decay)
    steps_per_epoch = len(images) // batch_size
    total = steps_per_epoch * epochs
    bar = tqdm(total=total, desc="pretrain mini CLIP", unit="step")
    step = 0
    for _ in range(epochs):
        order = list(range(len(images)))
        rng.shuffle(order)
        for b in range(steps_per_epoch):
            index = order[b * batch_size:(b + 1) * batch_size]
            batch = torch.stack([train_tf(images[i]) for i in index])
            losses = contrastive_step(
                optimizer, learning_rate("cosine_with_linear_warmup", step, total, lr, warmup=0.05),
                partial(step_losses, model, loss_fn, batch, tokens[index]),
                model=model, parameters=model.parameters(), clip_grad_norm=1.0)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses.loss.item():.3f}")
    bar.close()
    return total


def pretrain_base(out_dir: str | Path, data_root: Path, pool_shard_count: int = 20, epochs: int = 7,
                  batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.1, seed: int = 0,
                  threads: int | None = None) -> dict:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    build_datasets(data_root)
    images, captions = read_pool(pool_shards(data_root, pool_shard_count))
    model, tokenizer, cfg = build_model(captions, data_root)
    tokens = tokenizer(captions)
    start = time.time()
    total = train(model, images, tokens, epochs, batch_size, lr, weight_decay, rng)
    seconds = time.time() - start

    registry = load_registry(data_root / "datasets.json")
    suite = EvalSuite(data_root, list(registry.values()), open_clip.image_transform(IMAGE_SIZE, is_train=False))
    scores = {name: round(s.score, 2) for name, s in suite.evaluate(model, tokenizer, torch.device("cpu")).items()}
    report = {"scores": scores, "steps": total, "samples": total * batch_size, "seconds": round(seconds, 1),
              "pool_samples": len(images), "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "vocab_size": tokenizer.vocab_size, "seed": seed}
    write_model(out_dir, model, cfg, tokenizer, report)
    return report


def write_model(out_dir: Path, model: open_clip.CLIP, cfg: dict, tokenizer: WordTokenizer, report: dict) -> None:
    """An open_clip ``local-dir`` folder: weights, config, vocabulary, and the pretraining report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / "open_clip_model.safetensors", lambda f: f.write(_safetensors_bytes(state)), binary=True)
    atomic_write_json(out_dir / "open_clip_config.json", {
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"}})
    atomic_write(out_dir / "vocab.json", lambda f: f.write(json.dumps({"context_length": tokenizer.context_length,
                                                                       "vocab": tokenizer.vocab})))
    atomic_write_json(out_dir / "pretrain_report.json", report)


def _safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(state)
