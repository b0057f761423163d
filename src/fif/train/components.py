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
from typing import TYPE_CHECKING
from collections.abc import Callable

import torch

from fif.budget.plan import BudgetPlan, plan_task_budget, steps_without_budget
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
from fif.methods import ContinualMethod, apply_compute, build_method
from fif.models.backbone import Backbone, build_backbone, check_backbone
from fif.runtime.distributed import SINGLE, DistContext, check_batch_divisible
from fif.config.settings import RunSettings
from fif.train.checkpoint import Checkpointer

if TYPE_CHECKING:  # the composed config, handed on to RunSettings.from_config
    from omegaconf import DictConfig

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
    def from_settings(cls, settings: RunSettings) -> DataSettings:
        ds = settings.experiment.dataset
        mixture = {"pretraining": ds.data_mixture.pretraining, "update": ds.data_mixture.update,
                   "buffer": ds.data_mixture.buffer}
        data = cls(settings.experiment.seed, settings.task.batch_size, mixture, ds.skip_corrupt, ds.train_workers,
                   ds.prefetch)
        data.loader_settings(torch.device("cpu"))  # a bad train_workers / prefetch fails before any data is read
        return data


def check_config(cfg: DictConfig | RunSettings, dist: DistContext = SINGLE) -> DataSettings:
    """Every check that needs no data: every declared key's type and range (RunSettings), then the
    rules between keys: steps, mixture shares, batch over ranks, checkpoint keeping, the backbone's
    checkpoint path. Takes the composed config (the command line's) or the run's settings."""
    settings = cfg if isinstance(cfg, RunSettings) else RunSettings.from_config(cfg)
    data = DataSettings.from_settings(settings)
    check_batch_divisible(data.batch_size, dist)
    steps_without_budget(settings)  # a bad task or budget block fails here (with a budget, the plan decides the steps)
    batch_split(data.batch_size, data.mixture)  # validate the shares
    log = settings.log
    Checkpointer(Path("."), log.keep_checkpoints, log.checkpoint_every_steps, writer=False)  # checks only
    bb = settings.experiment.backbone
    check_backbone(bb.name, bb.checkpoint, bb.pretrained)  # a missing checkpoint, before any data
    return data


@dataclass
class RunComponents:
    """What one run trains and evaluates with; every field is a pure function of the config."""

    run: RunSettings
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


def evaluation_suite(run: RunSettings, root: Path, specs: list[DatasetSpec], backbone: Backbone,
                     protocol: EvalProtocol, settings: DataSettings, dist: DistContext,
                     device: torch.device) -> EvalSuite:
    ds, evaluation = run.experiment.dataset, run.evaluation
    templates = list(evaluation.templates) if evaluation.templates else None
    suite = EvalSuite(root, specs, backbone.eval_transform, ds.info_dir, preload=ds.preload or ds.preload_test_only,
                      batch_size=evaluation.batch_size, num_workers=ds.num_workers,
                      templates=templates, skip_corrupt=settings.skip_corrupt, splits=protocol.eval_splits,
                      tar=ds.tar, resized=ds.create_resized_variant_if_possible, dist=dist)
    protocol.attach(suite)
    return suite.for_device(device)


def _training_data(run: RunSettings, root: Path, registry: dict[str, DatasetSpec], entries: list[StreamEntry],
                   protocol: EvalProtocol, settings: DataSettings) -> tuple[TrainingCatalogue, PoolStream | None]:
    ds = run.experiment.dataset
    catalogue = TrainingCatalogue(root, registry, entries, ds.info_dir, preload=ds.preload and not ds.preload_test_only,
                                  skip_corrupt=settings.skip_corrupt, source=stream_source(ds),
                                  train_part=protocol.train_part, tar=ds.tar,
                                  resized=ds.create_resized_variant_if_possible)
    pool = (PoolStream(pool_shards(ds, run.mini_seed, root), settings.seed, ds.pool_shuffle_buffer,
                       skip_corrupt=settings.skip_corrupt)
            if settings.mixture["pretraining"] > 0 else None)
    return catalogue, pool


def build_components(run: RunSettings, device: torch.device, dist: DistContext, work_dir: Path | None,
                     echo: Echo = print) -> RunComponents:
    """Data, model, budget and method of a run, in the order the run has always built them."""
    settings = check_config(run, dist)
    ds = run.experiment.dataset
    buffer = ReplayBuffer(ds.buffer.policy, ds.buffer.size, settings.seed)
    root = data_root(ds, run.mini_seed, echo)
    registry = adapt_on(resolve_registry(ds.registry, root), ds.adapt_on)
    entries, tasks = make_tasks(run.experiment, root, registry)
    protocol = EvalProtocol(run.options, root, registry, echo)  # validation splits and evaluation subsets
    bb = run.experiment.backbone
    backbone = build_backbone(bb.name, bb.checkpoint, bb.cache_dir, bb.pretrained)
    backbone.model.to(device)
    catalogue, pool = _training_data(run, root, registry, entries, protocol, settings)
    specs = protocol.keep([s for s in registry.values() if s.role in (ADAPTATION, EVALUATION)])
    suite = evaluation_suite(run, root, specs, backbone, protocol, settings, dist, device)
    scope = stream_scope(tasks, specs, protocol.ka_mode)
    suite.task_groups = task_groups(tasks, suite.sets)  # task-masked accuracy of the streamed sets
    largest_task = (max(len(catalogue.task_indices(classes)) for classes in tasks)  # caps EWC's Fisher charge
                    if run.budget.unit is not None else None)  # only a budget needs it
    plan = plan_task_budget(run, backbone.model, device, largest_task)  # before the method changes the model
    method = build_method(run, backbone.model, device, dist=dist, work_dir=work_dir)
    apply_compute(method)  # experiment.compute: TF32, grad checkpointing, compile (after the plan: it counts the plain step)
    builder = BatchBuilder(catalogue, pool, backbone.train_transform, backbone.tokenizer, settings.seed,
                           settings.skip_corrupt)
    if device.type == "cuda":  # workers ship uint8 crops, normalised on the GPU (4x fewer bytes to copy)
        builder.normalise_on_device()
    return RunComponents(run, settings, root, entries, tasks, protocol, backbone, catalogue, pool, specs, suite, scope,
                         plan, method, builder, buffer, settings.loader_settings(device))
