import pytest

from fif.config import compose
from fif.errors import FifError


def test_default_experiment_is_mini_with_reference_keys():
    cfg = compose([])
    assert cfg.experiment.backbone.name == "mini_clip"
    assert cfg.continual.method == "finetune"
    assert set(cfg.experiment.task) == {"num", "dataset_incremental", "batch_size", "n_samples", "budget"}
    assert dict(cfg.experiment.dataset.data_mixture) == {"pretraining": 0.33, "update": 0.34, "buffer": 0.33}
    assert {"folder", "name", "checkpoint"} <= set(cfg.log)


def test_overrides_apply_in_order():
    cfg = compose(["experiment=mini", "continual.method=finetune", "experiment.task.num=5",
                   "experiment.dataset.data_mixture.update=1.0", "experiment.seed=3"])
    assert cfg.experiment.task.num == 5
    assert cfg.experiment.dataset.data_mixture["update"] == 1.0  # .update is a dict method
    assert cfg.experiment.seed == 3


def test_reference_experiment_keeps_reference_defaults():
    cfg = compose(["experiment=fif"])
    assert cfg.experiment.task.batch_size == 512
    assert cfg.experiment.task.n_samples == 727040
    assert cfg.experiment.task.num == 20
    assert cfg.experiment.optimizer.lr == pytest.approx(1e-5)


@pytest.mark.parametrize("override, culprit", [
    ("experiment.task.nmu=5", "experiment.task.nmu"),
    ("nonsense=1", "nonsense"),
    ("experiment=nope", "nope"),
    ("experiment.task.num=abc", "experiment.task.num"),
    ("log.checkpoint=maybe", "log.checkpoint"),
])
def test_bad_overrides_are_one_line_errors_naming_the_culprit(override, culprit):
    with pytest.raises(FifError) as info:
        compose([override])
    message = str(info.value)
    assert culprit in message
    assert "\n" not in message
