"""``fif-hydra``: the run as a real Hydra application, so Hydra's launcher plugins can run sweeps.

``fif run -m`` runs a sweep in turn in one process (no extra packages). For parallel jobs on a
cluster, Hydra's own multirun hands every configuration to a launcher plugin instead:

    pip install hydra-submitit-launcher      # Slurm (or hydra-joblib-launcher: local processes)
    fif-hydra -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu \\
        hydra.launcher.gpus_per_node=1 continual.method=finetune,lora,ema_paint experiment.seed=0,1,2

Each job composes the same config as ``fif run`` (same keys, same type checks) and writes its run to
``<log.folder>/<log.name>``; without a ``log.name`` a sweep job is named after its number and
overrides other than log.* (``3_continual.method=lora,experiment.seed=1``) so jobs never collide. Hydra's own
bookkeeping (``.hydra/`` with the composed config, overrides, and the job log) lands in
``hydra.sweep.dir`` (default: ``<log.folder>/hydra/<date>_<time>``). The job's return value is the
final geometric mean, so optimising sweepers (e.g. Optuna's) can tune on it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from fif.config import check_config, conf_dir
from fif.config.compose import store_declared
from fif.errors import FifError

store_declared()  # the declared option blocks (each method's continual.<name>), before @hydra.main composes


def job_name(num: int, overrides: list[str]) -> str:
    """``<job number>_<its overrides>`` without log.* keys, safe as one folder name."""
    kept = sorted(o for o in overrides if not o.lstrip("+~").startswith(("log.", "hydra.")))
    name = ",".join(kept).replace("/", "_")
    return f"{num}_{name}"[:200] if name else str(num)


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fif.results import RunResults
    from fif.train.run import run_experiment

    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    try:
        check_config(cfg, overrides)
    except FifError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if cfg.log.name is None and hydra_cfg.mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.log.name = job_name(hydra_cfg.job.num, overrides)
    OmegaConf.set_readonly(cfg, False)
    output = run_experiment(cfg)
    return float(RunResults(output.results).point("final")["geometric_mean"])


def entry() -> None:
    # Hydra's outputs default to ./outputs and ./multirun; keep them beside the runs instead.
    args = sys.argv[1:]
    if not any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args):
        folder = next((a.split("=", 1)[1] for a in args if a.startswith("log.folder=")), "runs")
        stamp = "${now:%Y-%m-%d}_${now:%H-%M-%S}"
        sys.argv += [f"hydra.run.dir={folder}/hydra/{stamp}", f"hydra.sweep.dir={folder}/hydra/{stamp}",
                     "hydra.job_logging.root.level=WARNING"]  # open_clip's INFO lines stay out of the console
    main()


if __name__ == "__main__":
    entry()
