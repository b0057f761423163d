"""The build phase of a run: everything it computes with, made from the config in one fixed order.

The order matters beyond readability: building the backbone, profiling the budget and installing
adapters draw from the global random generators, so a resumed run must build exactly as the
original did before it restores the saved random states. ``check_config`` runs first and fails on
a bad key before any data is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import torch
from omegaconf import DictConfig

from fif.budget.plan import BudgetPlan, budget_settings, plan_task_budget, steps_without_budget
from fif.data.format.fif_format import ADAPTATION, EVALUATION, DatasetSpec
from fif.data.format.registry import adapt_on, resolve_registry
from fif.data.format.streams import StreamEntry, make_tasks, stream_source
from fif.data.roots import data_root, pool_shards
from fif.data.samples.batches import BatchBuilder
from fif.data.samples.buffer import ReplayBuffer
from fif.data.samples.catalogue import TrainingCatalogue
from fif.data.samples.loader import LoaderSettings, resolve_workers
from fif.data.samples.mixture import batch_split
from fif.data.samples.pool import PoolStream
from fif.eval.protocol import EvalProtocol
from fif.eval.scope import StreamScope, stream_scope, task_groups
from fif.eval.suite import EvalSuite
from fif.methods import ContinualMethod, apply_compute, build_method, method_class
from fif.models.backbone import Backbone, build_backbone, check_backbone
from fif.runtime.distributed import SINGLE, DistContext, check_batch_divisible
from fif.config.blocks import DatasetOptions, check_run_options
from fif.config.settings import ComputeSettings, OptimizerSettings, TaskSettings
from fif.train.checkpoint import Checkpointer

Echo = Callable[..., object]


@dataclass(frozen=True)
class DataSettings:
    """The run-wide data choices read once from ``experiment``."""

    seed: int
    batch_size: int
    mixture: dict[str, float]  # shares of a training batch: update, buffer, pretraining
    skip_corrupt: bool
    train_workers: object  # ``auto`` or a count; resolved against the device by ``loader_settings``
    prefetch: int

    def loader_settings(self, device: torch.device) -> LoaderSettings:
        """How this run's training batches are built on ``device`` (workers, prefetch, pinned memory)."""
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun: ranks sharing this machine's cores
        return LoaderSettings(resolve_workers(self.train_workers, device, local), self.prefetch,
                              pin_memory=device.type == "cuda")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> DataSettings:
        ds = DatasetOptions.from_block(cfg.experiment.dataset, "experiment.dataset")
        mixture = {"pretraining": ds.data_mixture.pretraining, "update": ds.data_mixture.update,
                   "buffer": ds.data_mixture.buffer}
        settings = cls(check_run_options(cfg).experiment.seed, TaskSettings.from_config(cfg).batch_size, mixture,
                       ds.skip_corrupt, ds.train_workers, ds.prefetch)
        settings.loader_settings(torch.device("cpu"))  # a bad train_workers / prefetch fails before any data is read
        return settings


def _check_run_numbers(cfg: DictConfig) -> None:
    """Every declared key's type and range (fif.config.blocks), then what needs more than a range."""
    check_run_options(cfg)
    Checkpointer(Path("."), cfg.log.keep_checkpoints, cfg.log.checkpoint_every_steps, writer=False)  # checks only
    bb = cfg.experiment.backbone
    check_backbone(str(bb.name), bb.checkpoint, bool(bb.pretrained))  # a missing checkpoint, before any data


def check_config(cfg: DictConfig, dist: DistContext = SINGLE) -> DataSettings:
    """Every check that needs no data: method name, schedule/validation/subset keys, steps, mixture,
    every numeric key's range, the backbone's checkpoint path."""
    _check_run_numbers(cfg)
    OptimizerSettings.from_config(cfg)  # lr, weight decay, gradient clipping
    TaskSettings.from_config(cfg)
    settings = DataSettings.from_config(cfg)
    check_batch_divisible(settings.batch_size, dist)
    method_class(str(cfg.continual.method))  # fail on a typo before any data is read
    EvalProtocol.check(cfg)  # likewise the scheduler, validation-mode and subset keys
    steps_without_budget(cfg)  # a bad task or budget block fails here (with a budget, the plan decides the steps)
    batch_split(settings.batch_size, settings.mixture)  # validate the shares
    ComputeSettings.from_config(cfg)  # experiment.compute
    return settings


@dataclass
class RunComponents:
    """What one run trains and evaluates with; every field is a pure function of the config."""

    settings: DataSettings
    root: Path
    entries: list[StreamEntry]
    tasks: list[list[StreamEntry]]
    protocol: EvalProtocol
    backbone: Backbone
    catalogue: TrainingCatalogue
    pool: PoolStream | None
    specs: list[DatasetSpec]  # the datasets every evaluation point scores
    suite: EvalSuite
    scope: StreamScope  # which datasets each task brings; which ones A_KA averages over
    plan: BudgetPlan
    method: ContinualMethod
    builder: BatchBuilder
    buffer: ReplayBuffer
    loader: LoaderSettings


def evaluation_suite(cfg: DictConfig, root: Path, specs: list[DatasetSpec], backbone: Backbone,
                      protocol: EvalProtocol, settings: DataSettings, dist: DistContext,
                      device: torch.device) -> EvalSuite:
    ds = cfg.experiment.dataset
    templates = list(cfg.evaluation.templates) if cfg.evaluation.templates else None
    suite = EvalSuite(root, specs, backbone.eval_transform, ds.info_dir,
                      preload=bool(ds.preload or ds.preload_test_only),
                      batch_size=int(cfg.evaluation.batch_size), num_workers=int(ds.num_workers),
                      templates=templates, skip_corrupt=settings.skip_corrupt, splits=protocol.eval_splits,
                      tar=bool(ds.tar), resized=bool(ds.create_resized_variant_if_possible), dist=dist)
    protocol.attach(suite)
    return suite.for_device(device)


def _training_data(cfg: DictConfig, root: Path, registry: dict[str, DatasetSpec], entries: list[StreamEntry],
                   protocol: EvalProtocol, settings: DataSettings) -> tuple[TrainingCatalogue, PoolStream | None]:
    ds = cfg.experiment.dataset
    catalogue = TrainingCatalogue(root, registry, entries, ds.info_dir,
                                  preload=bool(ds.preload) and not ds.preload_test_only,
                                  skip_corrupt=settings.skip_corrupt, source=stream_source(cfg),
                                  train_part=protocol.train_part, tar=bool(ds.tar),
                                  resized=bool(ds.create_resized_variant_if_possible))
    pool = (PoolStream(pool_shards(cfg, root), settings.seed, int(ds.pool_shuffle_buffer),
                       skip_corrupt=settings.skip_corrupt)
            if settings.mixture["pretraining"] > 0 else None)
    return catalogue, pool


def build_components(cfg: DictConfig, device: torch.device, dist: DistContext, work_dir: Path | None,
                     echo: Echo = print) -> RunComponents:
    """Data, model, budget and method of a run, in the order the run has always built them."""
    settings = check_config(cfg, dist)
    buffer = ReplayBuffer(str(cfg.experiment.dataset.buffer.policy), cfg.experiment.dataset.buffer.size,
                          settings.seed)
    root = data_root(cfg, echo)
    registry = adapt_on(resolve_registry(cfg.experiment.dataset.registry, root), cfg.experiment.dataset.get("adapt_on"))
    entries, tasks = make_tasks(cfg, root, registry)
    protocol = EvalProtocol(cfg, root, registry, echo)  # validation splits and evaluation subsets
    bb = cfg.experiment.backbone
    backbone = build_backbone(bb.name, bb.checkpoint, bb.cache_dir, bool(bb.pretrained))
    backbone.model.to(device)
    catalogue, pool = _training_data(cfg, root, registry, entries, protocol, settings)
    specs = protocol.keep([s for s in registry.values() if s.role in (ADAPTATION, EVALUATION)])
    suite = evaluation_suite(cfg, root, specs, backbone, protocol, settings, dist, device)
    scope = stream_scope(tasks, specs, protocol.ka_mode)
    suite.task_groups = task_groups(tasks, suite.sets)  # task-masked accuracy of the streamed sets
    largest_task = (max(len(catalogue.task_indices(classes)) for classes in tasks)  # caps EWC's Fisher charge
                    if budget_settings(cfg).unit is not None else None)  # only a budget needs it
    plan = plan_task_budget(cfg, backbone.model, device, largest_task)  # before the method changes the model
    method = build_method(cfg, backbone.model, device, dist=dist, work_dir=work_dir)
    apply_compute(method)  # experiment.compute: TF32, grad checkpointing, compile (after the plan: it counts the plain step)
    builder = BatchBuilder(catalogue, pool, backbone.train_transform, backbone.tokenizer, settings.seed,
                           settings.skip_corrupt)
    if device.type == "cuda":  # workers ship uint8 crops, normalised on the GPU (4x fewer bytes to copy)
        builder.normalise_on_device()
    return RunComponents(settings, root, entries, tasks, protocol, backbone, catalogue, pool, specs, suite, scope,
                         plan, method, builder, buffer, settings.loader_settings(device))
