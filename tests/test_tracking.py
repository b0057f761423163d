"""Tracking backends: the fan-out sends the loop's events to the JSONL log, TensorBoard and W&B,
and what each backend stored reads back equal to what was logged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fif.config.settings import RunSettings
from fif.config import compose
from fif.errors import FifError
from fif.tracking import FanOutTracker, JsonlTracker, build_tracker
from fif.tracking.build import redacted_config
from fif.tracking.scalars import ScalarMapper
from fif.tracking.tensorboard import TensorBoardTracker

# The loop's event sequence for a 2-task run (field names as fif.train.run logs them).
EVENTS = [
    ("start", {"tasks": 2, "steps_per_task": 2, "gflops_per_sample": 0.25}),
    ("eval", {"task": 0, "A_KA": 13.5, "A_ZS": 81.25, "geometric_mean": 33.1, "per_dataset": {"d1": 10.0, "d2": 90.0}}),
    ("step", {"task": 1, "step": 0, "samples_seen": 128, "loss": 5.5, "lr": 2e-4}),
    ("step", {"task": 1, "step": 1, "samples_seen": 256, "loss": 3.25, "lr": 1e-6}),
    ("eval", {"task": 1, "A_KA": 20.0, "A_ZS": 80.0, "geometric_mean": 40.0, "seconds": 4.5,
              "per_dataset": {"d1": 20.0, "d2": 80.0}}),
    ("step", {"task": 2, "step": 0, "samples_seen": 384, "loss": 3.0, "lr": 2e-4}),
    ("step", {"task": 2, "step": 1, "samples_seen": 512, "loss": 2.5, "lr": 1e-6}),
    ("eval", {"task": 2, "A_KA": 30.0, "A_ZS": 75.0, "geometric_mean": 47.4, "seconds": 4.0}),
    ("end", {"seconds": 12.0, "A_KA": 30.0, "A_ZS": 75.0, "geometric_mean": 47.4, "per_dataset": {"d1": 30.0}}),
]


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def _replay(tracker) -> None:
    for event, fields in EVENTS:
        tracker.log(event, **fields)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Offline W&B with every folder it writes inside tmp; never online."""
    pytest.importorskip("wandb", reason="wandb is an optional extra ([track]); the test extra installs it")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    for key in ("DIR", "CONFIG_DIR", "CACHE_DIR", "DATA_DIR"):
        monkeypatch.setenv(f"WANDB_{key}", str(tmp_path / "wandb_home" / key.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_fanout_writes_jsonl_and_tensorboard_that_read_back_equal(tmp_path):
    tracker = FanOutTracker([JsonlTracker(tmp_path), TensorBoardTracker(tmp_path / "tb")])
    _replay(tracker)
    tracker.close()

    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in lines] == [event for event, _ in EVENTS] and all(e["time"] > 0 for e in lines)
    assert [{k: v for k, v in e.items() if k not in ("event", "time")} for e in lines] == [f for _, f in EVENTS]

    scalars = _scalars(tmp_path / "tb")
    approx = pytest.approx  # TensorBoard stores float32
    assert scalars["train/loss"] == [(128, 5.5), (256, 3.25), (384, 3.0), (512, 2.5)]
    assert [s for s, _ in scalars["train/lr"]] == [128, 256, 384, 512]
    assert [v for _, v in scalars["train/lr"]] == approx([2e-4, 1e-6, 2e-4, 1e-6], rel=1e-6)
    assert scalars["train/task"] == [(128, 1), (256, 1), (384, 2), (512, 2)]
    assert scalars["eval/A_KA"] == [(0, 13.5), (1, 20.0), (2, 30.0)]
    assert scalars["eval/A_ZS"] == [(0, 81.25), (1, 80.0), (2, 75.0)]
    assert scalars["eval/gflops"] == [(0, 0.0), (1, 0.25 * 256), (2, 0.25 * 512)]  # gflops_per_sample x seen
    assert scalars["eval/samples_seen"] == [(0, 0), (1, 256), (2, 512)]
    assert scalars["dataset/d1"] == [(0, 10.0), (1, 20.0)]
    assert scalars["zero_shot/A_ZS"] == [(0, 81.25)]
    assert scalars["final/A_KA"] == [(2, 30.0)]
    assert scalars["final/dataset/d1"] == [(2, 30.0)]
    assert scalars["averaged/A_KA"] == [(2, 25.0)]  # mean over tasks 1..2, zero-shot excluded
    assert scalars["averaged/A_ZS"] == [(2, 77.5)]
    assert scalars["run/seconds"] == [(2, 12.0)]


def test_averaged_needs_every_task_or_the_end_events_own_value():
    def averaged(events):
        mapper = ScalarMapper()
        return {s.tag: s.value for event, fields in events for s in mapper.map(event, fields)
                if s.tag.startswith("averaged/")}

    assert averaged(EVENTS) == {"averaged/A_KA": 25.0, "averaged/A_ZS": 77.5, "averaged/geometric_mean": 43.7}
    resumed = [EVENTS[0]] + EVENTS[5:]  # a tracker started after a resume sees task 2 only
    assert averaged(resumed) == {}
    end, fields = resumed[-1]
    given = {"A_KA": 26.0, "A_ZS": 77.0, "geometric_mean": 44.0}
    assert averaged(resumed[:-1] + [(end, {**fields, "averaged": given})]) == {f"averaged/{k}": v
                                                                             for k, v in given.items()}


def test_wandb_offline_gets_the_same_calls(tmp_path, wandb_env):
    from fif.tracking.wandb import WandbTracker

    run_dir = tmp_path / "run"
    wandb_tracker = WandbTracker(run_dir, "fif-tests", mode="offline", config={"log": {"use": True}})
    tracker = FanOutTracker([JsonlTracker(run_dir), TensorBoardTracker(run_dir / "tb"), wandb_tracker])
    _replay(tracker)
    summary = dict(wandb_tracker.run.summary)
    tracker.close()

    assert summary["train/loss"] == 2.5 and summary["train/samples_seen"] == 512
    assert summary["eval/A_KA"] == 30.0 and summary["eval/task"] == 2 and summary["eval/gflops"] == 128.0
    assert summary["dataset/d2"] == 80.0
    assert {k: summary[f"zero_shot/{k}"] for k in ("A_KA", "A_ZS")} == {"A_KA": 13.5, "A_ZS": 81.25}
    assert summary["final/geometric_mean"] == 47.4
    assert summary["averaged/A_KA"] == 25.0 and summary["averaged/A_ZS"] == 77.5
    record = json.loads((run_dir / "wandb_run.json").read_text())
    assert record["mode"] == "offline" and record["project"] == "fif-tests"
    offline = Path(record["local_dir"])
    assert offline.parent == run_dir / "wandb" and offline.name.startswith("offline-run-")
    assert list(offline.glob(f"run-{record['id']}.wandb"))  # what `wandb sync` uploads

    again = WandbTracker(run_dir, "fif-tests", mode="offline")  # a resumed run continues the same W&B run
    assert again.run.id == record["id"]
    again.close()


def test_wandb_disabled_mode_accepts_the_calls_and_writes_nothing(tmp_path, wandb_env):
    from fif.tracking.wandb import WandbTracker

    tracker = WandbTracker(tmp_path, "fif-tests", mode="disabled")
    _replay(tracker)
    tracker.close()
    assert not (tmp_path / "wandb_run.json").exists() and not (tmp_path / "wandb").exists()


def test_build_tracker_follows_the_config(tmp_path, wandb_env):
    plain = build_tracker(RunSettings.from_config(compose([])), tmp_path / "a")
    assert [type(t).__name__ for t in plain.trackers] == ["JsonlTracker"]
    plain.close()
    cfg = compose(["log.tensorboard=true", "log.use=true", "log.wandb_mode=disabled", "log.wandb_key=secret-key"])
    full = build_tracker(RunSettings.from_config(cfg), tmp_path / "b")
    assert [type(t).__name__ for t in full.trackers] == ["JsonlTracker", "TensorBoardTracker", "WandbTracker"]
    _replay(full)
    full.close()
    assert _scalars(tmp_path / "b" / "tensorboard")["eval/A_KA"] == [(0, 13.5), (1, 20.0), (2, 30.0)]
    assert redacted_config(RunSettings.from_config(cfg))["log"]["wandb_key"] == "<redacted>"
    assert cfg.log.wandb_key == "secret-key"  # the config itself is left alone


def test_bad_wandb_mode_is_one_line(tmp_path, wandb_env):
    with pytest.raises(FifError, match=r"log.wandb_mode='sometimes' is not valid: expected one of online, "
                                        r"offline, disabled"):
        build_tracker(RunSettings.from_config(compose(["log.use=true", "log.wandb_mode=sometimes"])), tmp_path)
    assert not (tmp_path / "events.jsonl").exists()  # optional backends fail before any file is opened


@pytest.mark.parametrize("key, module, package", [("log.use", "wandb", "wandb"),
                                                  ("log.tensorboard", "torch.utils.tensorboard", "tensorboard")])
def test_enabled_backend_without_its_package_is_one_clear_error(tmp_path, monkeypatch, key, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # what Python does when the package is not installed
    with pytest.raises(FifError, match=rf"{key}=true.*needs the {package} package \(pip install "
                                       r"'fomo-in-flux\[track\]'\)"):
        build_tracker(RunSettings.from_config(compose([f"{key}=true"])), tmp_path)


def test_real_run_logs_the_same_numbers_as_results_json(tracked_runs):
    run_dir = tracked_runs / "replay"
    results = json.loads((run_dir / "results.json").read_text())
    scalars = _scalars(run_dir / "tensorboard")

    def approx(values):  # TensorBoard stores float32
        return pytest.approx(values, rel=1e-6)

    for metric in ("A_KA", "A_ZS", "geometric_mean"):
        expected = [results["zero_shot"][metric]] + [t[metric] for t in results["tasks"]]
        assert [s for s, _ in scalars[f"eval/{metric}"]] == [0, 1, 2]
        assert [v for _, v in scalars[f"eval/{metric}"]] == approx(expected)
        assert scalars[f"averaged/{metric}"][0][1] == approx(results["averaged"][metric])
        assert scalars[f"final/{metric}"][0][1] == approx(results["final"][metric])
    assert [v for _, v in scalars["eval/gflops"]] == approx([0.0] + [t["gflops"] for t in results["tasks"]])
    steps = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    steps = [e for e in steps if e["event"] == "step"]
    assert [(s, v) for s, v in scalars["train/lr"]] == [(e["samples_seen"], pytest.approx(e["lr"], rel=1e-6))
                                                         for e in steps]
    record = json.loads((run_dir / "wandb_run.json").read_text())
    assert record["mode"] == "offline" and list(Path(record["local_dir"]).glob("run-*.wandb"))


def test_wandb_key_never_reaches_the_run_folder(tmp_path, mini_root):
    from fif.config import compose
    from fif.train.run import run_experiment

    cfg = compose([f"log.folder={tmp_path}", "log.name=secret", "log.progress=false", "experiment.task.num=1",
                   "experiment.task.n_samples=128", "log.wandb_key=s3cr3t-k3y"])
    run_dir = run_experiment(cfg, echo=lambda *_: None).run_dir
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in written)
    for path in written:
        assert b"s3cr3t-k3y" not in path.read_bytes(), path
