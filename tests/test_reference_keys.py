"""The reference's config keys are accepted as aliases, and each reference experiment file has a preset.

The reference's Hydra files are read from ../shared/reference/fif/reference_configs.json; every key
they use must translate (no error) into keys of ours, and composing ``experiment=<preset>`` must
give the values the reference file sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fif.config import compose, conf_dir, leaves
from fif.errors import FifError
from fif.config.reference_keys import alias_table, translate_overrides, translate_pairs

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fif" / "reference_configs.json"
needs_reference = pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared/reference/fif is not present")

# reference experiment file -> our preset (experiment=NAME)
PRESETS = {name: name for name in (
    "continualfomo_debug", "continualfomo_default", "continualfomo_fast", "ema_paint_task_arithmetic",
    "full_finetune", "offline_merge_interpolation_noreplay", "offline_merge_interpolation_replay",
    "offline_merge_task_arithmetic_dataset_incremental", "oracle", "simple_finetune", "zeroshot_evaluation_complete")}

# Where a preset knowingly differs from the reference file's value (docs/reference.md says why).
DOCUMENTED_DIFFERENCES = {
    ("continualfomo_fast", "experiment.dataset.sequence"),  # its random_sequence_1_fast.json does not exist
    ("zeroshot_evaluation_complete", "experiment.dataset.name"),  # a zero-shot run streams nothing
    ("zeroshot_evaluation_complete", "experiment.dataset.sequence"),
}
SHARED_PATHS = {"experiment.dataset.root", "experiment.dataset.pretraining_pool", "experiment.backbone.cache_dir",
                "log.folder"}  # the reference's relative ./data, ./cache: the user's own paths


def _reference_files() -> dict[str, dict]:
    return json.loads(REFERENCE.read_text())


def _stream_name(value: str) -> str:
    return Path(value).name.removesuffix(".json")


@needs_reference
def test_every_reference_key_translates_to_a_key_of_ours():
    """All keys of the reference's config.yaml and its 11 experiment files are accepted."""
    defaults = OmegaConf.to_container(compose(["experiment=fif"], echo=lambda _: None), resolve=False)
    ours = dict(leaves(defaults))
    for path, content in _reference_files().items():
        pairs = [(k, v) for k, v in leaves(content) if not k.startswith(("hydra.", "defaults"))]
        translated = translate_pairs(pairs)
        missing = [key for key, _ in translated.pairs if key not in ours]
        assert not missing, f"{path}: keys without a home here: {missing}"
        assert len(translated.notes) > 0


@needs_reference
@pytest.mark.parametrize("reference_file", sorted(PRESETS))
def test_each_reference_experiment_has_a_preset_with_its_values(reference_file):
    content = _reference_files()[f"configs/experiment/{reference_file}.yaml"]
    translated = translate_pairs(list(leaves(content)))
    cfg = compose([f"experiment={PRESETS[reference_file]}"], echo=lambda _: None)
    compared = 0
    for key, value in translated.pairs:
        if key in SHARED_PATHS or (reference_file, key) in DOCUMENTED_DIFFERENCES:
            continue
        ours = OmegaConf.select(cfg, key)
        ours = OmegaConf.to_container(ours, resolve=True) if OmegaConf.is_config(ours) else ours
        if key == "experiment.dataset.sequence" and value is not None:
            value, ours = _stream_name(value), _stream_name(str(ours))
        if isinstance(value, str) and isinstance(ours, float):
            value = float(value)  # the reference writes lr: "1e-5" as a string in simple_finetune
        assert ours == value, f"{reference_file}: {key} is {ours!r} here, {value!r} in the reference"
        compared += 1
    assert compared >= (5 if reference_file == "zeroshot_evaluation_complete" else 20)


def test_every_preset_is_documented_and_composes():
    presets = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
    assert set(PRESETS.values()) | {"fif", "mini"} == set(presets)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    for name in presets:
        compose([f"experiment={name}"], echo=lambda _: None)
        assert f"`experiment={name}`" in doc, f"docs/reference.md does not describe experiment={name}"


def test_fif_is_the_papers_main_setting():
    cfg = compose(["experiment=fif"], echo=lambda _: None)
    assert cfg.experiment.backbone.name == "openclip_vit_b16"
    assert cfg.experiment.dataset.sequence == "random_sequence_1"
    assert (cfg.experiment.task.num, cfg.experiment.task.batch_size, cfg.experiment.task.n_samples) == (20, 512, 727040)
    mixture = cfg.experiment.dataset.data_mixture
    assert (mixture["pretraining"], mixture["update"], mixture["buffer"]) == (0.33, 0.34, 0.33)


def test_a_pasted_reference_command_composes_with_one_note_per_renamed_key():
    notes: list[str] = []
    cfg = compose(["experiment=mini", "experiment.dataset.path=/data/fif", "experiment.scheduler.warmup_perc=0.2",
                   "experiment.task.data_mixture.update=0.5", "experiment.task.data_mixture.buffer=0.17",
                   "experiment.evaluation.batch_size=-1", "gpu=[1]"], echo=notes.append)
    assert cfg.experiment.dataset.root == "/data/fif"
    assert cfg.experiment.scheduler.warmup == 0.2
    assert cfg.experiment.dataset.data_mixture["update"] == 0.5
    assert cfg.evaluation.batch_size == cfg.experiment.task.batch_size == 128  # -1: the training batch
    assert cfg.device == "cuda:1"
    assert len(notes) == 6 and all(n.startswith("note: ") and "\n" not in n for n in notes)
    assert "experiment.dataset.root" in notes[0]


def test_our_own_keys_pass_through_without_notes():
    ours = ["experiment.dataset.root=/x", "experiment.scheduler.name=constant", "+foo.bar=1",
            "continual.ema_paint.backbone_merge.weight=0.3", "continual.zs_paint.head_merge.lines.enabled=true",
            "continual.offline_merge.backbone_merge.method=ties", "continual.offline_merge.include_zero_shot=true",
            "continual.merge_grid.init=latest"]
    overrides, notes = translate_overrides(ours)
    assert overrides == ours
    assert notes == []


def test_a_value_we_cannot_honour_is_a_one_line_error():
    with pytest.raises(FifError) as error:
        compose(["experiment.optimizer.loss=ce"], echo=lambda _: None)
    assert str(error.value).startswith("experiment.optimizer.loss='ce'") or "experiment.optimizer.loss=ce" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(FifError, match="experiment.backbone.half_precision"):
        compose(["experiment.backbone.half_precision=false"], echo=lambda _: None)


def test_renamed_scheduler_and_kv_only_convert_values():
    pairs = translate_pairs([("experiment.scheduler.name", "none"), ("continual.lora.kv_only", True),
                             ("experiment.evaluation.batch_size", 256)]).pairs
    assert pairs == [("experiment.scheduler.name", "constant"), ("continual.lora.attention", ["k", "v"]),
                     ("evaluation.batch_size", 256)]


def test_docs_hold_the_current_alias_table():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    assert alias_table() in doc, "docs/reference.md is out of date: paste `python -m fif.config.reference_keys`"


def test_merge_keys_convert_only_the_selected_operator_with_the_reference_semantics():
    base = "continual.ema_paint.backbone_merge"
    pairs = translate_pairs([(f"{base}.method", "ties"), (f"{base}.ties.prune_percentile", 0.8),
                             (f"{base}.ties.scaling_factor", 0.5), (f"{base}.magmax.scaling_factor", 0.3),
                             (f"{base}.task_arithmetic.scaling_factor", 0.1)]).pairs
    assert dict(pairs) == {f"{base}.method": "ties", f"{base}.density": 0.2, f"{base}.prune_scope": "model",
                           f"{base}.prune_rule": "kth_value", f"{base}.sign_tie": "majority", f"{base}.scaling": 0.5}
    ta = dict(translate_pairs([(f"{base}.method", "task_arithmetic"),
                               (f"{base}.task_arithmetic.scaling_factor", 0.1)]).pairs)
    assert (ta[f"{base}.scaling"], ta[f"{base}.aggregate"]) == (0.1, "sum")


def test_double_merge_is_merge_grid_and_lines_follow_the_reference():
    pairs = dict(translate_pairs([("continual.method", "double_merge_all_ft")]).pairs)
    assert pairs == {"continual.method": "merge_grid", "continual.merge_grid.init": "merge_of_all",
                     "continual.merge_grid.eval": "latest", "continual.merge_grid.unrolled_start": "first_task"}
    base = "continual.zs_paint.head_merge"
    lines = dict(translate_pairs([(f"{base}.method", "ties"), (f"{base}.apply_lines", True),
                                  (f"{base}.ties.scaling_factor", 0.7),
                                  (f"{base}.lines_params", [0.3, 0.6, True, "sqrt"])]).pairs)
    assert lines[f"{base}.lines.enabled"] is True and lines[f"{base}.scaling"] == 1.0  # LiNeS ignores lambda
    assert (lines[f"{base}.lines.alpha"], lines[f"{base}.lines.beta"], lines[f"{base}.lines.power"]) == (0.3, 0.6, 0.5)
    with pytest.raises(FifError, match="apply_lines=true with interpolation"):
        translate_pairs([(f"{base}.method", "interpolation"), (f"{base}.apply_lines", True)])
    cfg = compose(["continual.method=double_merge_unrolled_ft",
                   "continual.offline_merge.backbone_merge.task_arithmetic.scaling_factor=0.3"], echo=lambda _: None)
    assert (cfg.continual.method, cfg.continual.merge_grid.init, cfg.continual.merge_grid.eval) == \
        ("merge_grid", "unrolled", "latest")
    assert cfg.continual.offline_merge.backbone_merge.aggregate == "sum"


def _mini_run(tmp_path: Path, name: str, *overrides: str) -> dict:
    from fif.train.run import run_experiment

    cfg = compose(["experiment=mini", f"log.folder={tmp_path}", f"log.name={name}", "log.progress=false",
                   *overrides], echo=lambda _: None)
    return run_experiment(cfg, echo=lambda *_, **__: None).results


def test_zero_shot_only_scores_and_trains_nothing(tmp_path, mini_root):
    results = _mini_run(tmp_path, "zs", "zeroshot_only=true")
    assert results["status"] == "complete" and results["tasks"] == []
    assert results["final"]["per_dataset"] == results["zero_shot"]["per_dataset"]
    assert results["final"]["A_KA"] == results["zero_shot"]["A_KA"] > 0


def test_adapt_on_streams_an_evaluation_dataset_and_counts_it_in_a_ka(tmp_path):
    """The reference's simple_finetune trains on an evaluation-only dataset; adapt_on allows exactly that."""
    import dataclasses
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fif_root_factory import DATASETS, make_fif_root

    from fif.train.run import run_experiment

    datasets = [dataclasses.replace(d, per_class={"train": 6, "test": 5}) if d.name == "gtsrb" else d
                for d in DATASETS]
    root = make_fif_root(tmp_path / "root", layout="folder", datasets=datasets).root
    common = [f"experiment.dataset.root={root}", "experiment.dataset.sequence=null", "experiment.dataset.name=[GTSRB]",
              "experiment.backbone.name=mini_clip", "experiment.task.num=1", "experiment.task.n_samples=64",
              "experiment.task.batch_size=32", "experiment.dataset.data_mixture.pretraining=0",
              "experiment.dataset.data_mixture.update=1.0", "experiment.dataset.data_mixture.buffer=0",
              f"log.folder={tmp_path / 'runs'}", "log.progress=false"]
    with pytest.raises(FifError, match=r"adapt_on=\[gtsrb\] makes it one"):
        run_experiment(compose([*common, "log.name=refused"], echo=lambda _: None), echo=lambda *_: None)
    cfg = compose([*common, "log.name=adapted", "experiment.dataset.adapt_on=[gtsrb]"], echo=lambda _: None)
    results = run_experiment(cfg, echo=lambda *_: None).results
    task = results["tasks"][0]
    assert task["classes"] == 2 and task["samples_seen"] == 64
    from fif.report.roles import dataset_roles

    roles = dataset_roles(results)
    assert roles["gtsrb"] == "adaptation" and roles["flickr30k"] == "evaluation"
    adapted = [task["per_dataset"][name] for name, role in roles.items() if role == "adaptation"]
    assert len(adapted) == 3  # gtsrb is scored as an adaptation dataset, and (the only one streamed) is A_KA
    assert results["knowledge_datasets"] == ["gtsrb"] and task["A_KA"] == task["per_dataset"]["gtsrb"]
