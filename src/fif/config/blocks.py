"""The run-wide config blocks, declared once: ``experiment.*``, ``evaluation.*``, ``log.*``, ``device``.

Defaults are the reference protocol's (arXiv 2408.14471, ExplainableML/fomo_in_flux); the default
experiment preset (conf/experiment/mini.yaml) scales them down to the embedded mini benchmark.
Composition takes these defaults (fif.config.compose), ``check_run_options`` checks a composed
config against them in one pass (one-line errors naming the key), docs/options.md lists them.
Rules across keys (a budget unit needs an amount, a meta-schedule needs a within-task schedule,
...) stay with the typed settings that use them (fif.config.settings and the modules below).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from fif.config.options import Options, block, option
from fif.errors import FifError

MAX_SEED = 2**32 - 1  # np.random.seed's range (fif.runtime.device.seed_everything seeds NumPy with it)
BUDGET_UNITS = ("fullft_steps", "maf")
PRECISIONS = ("fp32", "bf16")  # activations counted as a CPU run (fp32) or a CUDA AMP step (bf16)
MEMORY_SOURCES = ("count", "allocator")  # peak memory counted from tensors, or the CUDA allocator's
WITHIN_TASK = ("constant", "cosine_with_linear_warmup", "warmup_stable_cooldown", "rsqrt")
STREAM = ("cosine_with_linear_warmup_and_recovery", "cosine_with_linear_warmup_and_dynamic_recovery",
          "rsqrt_with_recovery", "wsd")
SCHEDULES = WITHIN_TASK + STREAM
META = ("constant", "linear", "cosine", "rsqrt")
RECOVERY_MODES = ("autoregressive", "continued", "recovered")
COOLDOWN_SHAPES = ("linear", "1-sqrt")


@dataclass(frozen=True)
class BackboneOptions(Options):
    """``experiment.backbone``: which CLIP, from which weights."""

    name: str = option("openclip_vit_b32", "mini_clip | openclip_vit_b32 | openclip_vit_b16 | openclip_vit_l14 | "
                       "openclip_vit_h14 | openclip_vit_g14 | openclip_vit_bigg14 | openclip_convnext_base | "
                       "openclip_convnext_base_w | openclip_convnext_large_d | local-dir:/path (an open_clip local-dir "
                       "folder) | hf-hub:ORG/REPO; named backbones download their open_clip weights on first use "
                       "(docs/weights.md)")
    checkpoint: str | None = option(None, "local weights file (.pt, .bin, .safetensors, or a run's final_model.pt) or "
                                    "open_clip local-dir folder",
                                    kind="any")
    cache_dir: str | None = option(None, "open_clip / Hugging Face hub cache (null: huggingface_hub's default); "
                                   "missing weights are downloaded there unless HF_HUB_OFFLINE=1; a cache filled by `fif "
                                   "weights fetch` records and checks SHA-256 (docs/weights.md)", kind="any")
    pretrained: bool = option(True, "false: build the architecture with random weights (profiling only)")
    freeze_features: bool = option(False, "true: locked-image, the image tower (every visual.*) is frozen, for "
                                    "every gradient method (reference name)")
    freeze_head: bool = option(False, "true: locked-text, everything but the image tower (logit_scale included) is "
                                "frozen, for every gradient method (reference name)")


@dataclass(frozen=True)
class BudgetOptions(Options):
    """``experiment.task.budget``: compute per task (fif.budget, docs/budget.md): equal cost, not equal steps."""

    unit: str | None = option(None, "null: n_samples sets the steps | fullft_steps: the steps full finetuning would "
                              "get (reference) | maf: MAF-GFLOPs; the method gets floor(budget / its cost per step) steps "
                              "(docs/budget.md)", kind="choice", choices=BUDGET_UNITS,
                              null_means="n_samples sets the steps")
    amount: float | None = option(None, "budget per task in that unit, e.g. 1420 (fullft_steps: the reference's 1420 "
                                  "steps of 512)", kind="number", minimum=0.0, exclusive_min=True)
    charge_end_of_task: bool = option(True, "take once-per-task compute (EWC's Fisher pass) out of each task's budget")
    precision: str = option("auto", "activations in the CPU count: auto (as the run trains: bf16 on cuda, fp32 on "
                            "cpu) | fp32 | bf16", choices=("auto", *PRECISIONS))
    memory: str = option("auto", "peak memory: auto (cuda: allocator peak of a real step; cpu: counted) | count | "
                         "allocator", choices=("auto", *MEMORY_SOURCES))


@dataclass(frozen=True)
class TaskOptions(Options):
    """``experiment.task``: how the stream is cut into tasks and what each task trains on."""

    num: int = option(20, "number of tasks the stream is chunked into (the first len % num tasks get one class "
                      "more)", minimum=1)
    dataset_incremental: bool = option(False, "true: one task per dataset (order of first appearance); ignores num")
    batch_size: int = option(512, "training batch size (update + buffer + pretraining shares together)", minimum=1)
    n_samples: int = option(727040, "samples per task (update + buffer + pretraining shares together): n_samples // "
                            "batch_size steps, unless a budget.unit is set", minimum=1)
    budget: BudgetOptions = block(BudgetOptions, "compute budget per task")


@dataclass(frozen=True)
class MixtureOptions(Options):
    """``experiment.dataset.data_mixture``: shares of each training batch (must sum to 1)."""

    pretraining: float = option(0.33, "share of the pretraining pool", minimum=0.0, says="a finite share >= 0")
    update: float = option(0.34, "share of the current task's data", minimum=0.0, says="a finite share >= 0")
    buffer: float = option(0.33, "share of the replay buffer (earlier tasks); task 1 hands the empty buffer's share "
                           "to the others (the reference's split: 512 -> 169/175/168)", minimum=0.0, says="a finite share >= 0")


@dataclass(frozen=True)
class BufferOptions(Options):
    """``experiment.dataset.buffer``: which earlier samples the buffer share draws from."""

    policy: str = option("all", "all (the reference: every sample of every earlier task, held as indices) | "
                         "reservoir (a uniform random subset of size) | class_balanced (equal slots per class seen, "
                         "evicting from the largest class)",
                         choices=("all", "reservoir", "class_balanced"))
    size: int | None = option(None, "most samples held (reservoir / class_balanced only); null with policy all",
                              kind="whole", minimum=1, null_means="policy all")


@dataclass(frozen=True)
class DatasetOptions(Options):
    """``experiment.dataset``: where the data is, which stream, how samples are read and mixed."""

    root: str | None = option(None, "FiF data root; null with experiment=mini: the generated mini benchmark", kind="any")
    info_dir: str | None = option(None, "folder of <FOLDER>_<split>.json info files; null: ROOT/00_info", kind="any")
    registry: str | None = option(None, "datasets.json-format file; fif: built-in FiF registry; null: "
                                  "ROOT/datasets.json if present, else built-in", kind="any")
    sequence: str | None = option(None, "stream file (JSON list of \"FOLDER+++classname\"; folders or reference handles "
                                  "such as cifar100+++apple) or a shipped stream's name: the reference's 29 and the "
                                  "mini's; `fif streams list` shows them (docs/streams.md)",
                                  kind="any")
    name: Any = option(None, "with sequence=null: stream every class of these datasets, dataset after dataset, "
                       "e.g. [CIFAR100,DTD] (folders or handles; classes read from the train split)",
                       kind="any")
    adapt_on: Any = option(None, "evaluation-only datasets made adaptation datasets of this run, so they may be "
                           "streamed (counted in A_KA), e.g. [caltech101] (the reference's simple_finetune)",
                           kind="any")
    sequence_reshuffle: bool = option(False, "shuffle the stream's classes by experiment.seed (the reference's numpy "
                                      "shuffle)")
    tar: bool = option(False, "read images straight from ROOT/<FOLDER>.tar (members <FOLDER>/<key>, uncompressed; "
                          "indexed once, never extracted) instead of ROOT/<FOLDER>/")
    create_resized_variant_if_possible: bool = option(False, "read the 224-px variants (<FOLDER>_<split>_224.json, "
                                                      "images under ROOT/<FOLDER>/<FOLDER>_<split>_224/) where they "
                                                      "exist")
    preload: bool = option(False, "hold training and (transformed) test images in RAM (small datasets only)")
    preload_test_only: bool = option(False, "hold only the transformed test images in RAM")
    num_workers: int = option(4, "evaluation data-loader workers when test images are not preloaded (folder and tar "
                           "layouts)", minimum=0)
    train_workers: Any = option("auto", "processes that build training batches (read, decode, augment, tokenize) ahead "
                                "of the step: auto (cuda: the cores but one, at most 8, per torchrun process on the "
                                "node; cpu: 0, the step uses every core) | N >= 0; a step's batch is the same tensors "
                                "with 0, 1 or N workers", kind="any")
    prefetch: int = option(2, "training batches each of those workers keeps ready (the loader is prefetch x workers "
                           "steps ahead)", minimum=1)
    pretraining_pool: str | None = option(None, "folder of webdataset tar shards (image + txt caption) used for replay; null with "
                                          "experiment=mini: the generated pool",
                                          kind="any")
    pool_shards: int | None = option(None, "use only the first N shards of the pool (null: all)", kind="whole",
                                     minimum=1, null_means="all shards")
    pool_shuffle_buffer: int = option(5000, "shuffle buffer of the pool stream (samples)", minimum=1)
    data_mixture: MixtureOptions = block(MixtureOptions, "shares of each training batch")
    buffer: BufferOptions = block(BufferOptions, "the replay buffer")
    skip_corrupt: bool = option(False, "true: a corrupt training image is replaced by another sample of its source, a "
                                "corrupt pool sample (or one without a caption) by another pool sample of the batch, "
                                "and a corrupt test image is left out (results.json: skipped_corrupt); false: the "
                                "first corrupt image stops the run with a one-line error naming it")
    validation_mode: bool = option(False, "true: tune on validation splits carved from the train splits, never on test "
                                   "data (docs/schedules.md)")
    train_val_split: float = option(0.8, "validation mode: share of each train split kept for training (per class, "
                                    "seeded); the rest validates", minimum=0.0, maximum=1.0, exclusive_min=True,
                                    exclusive_max=True, says="a fraction in (0, 1), the share of each train split "
                                    "kept for training")
    validation_fallback: str = option("exclude", "validation mode, a dataset without a train split: exclude (left out "
                                      "of A_ZS, warned) | test (keep its test split, warned)",
                                      choices=("exclude", "test"))


@dataclass(frozen=True)
class OptimizerOptions(Options):
    """``experiment.optimizer``: AdamW's peak learning rate, weight decay and gradient clipping."""

    lr: float = option(1.0e-5, "peak learning rate", minimum=0.0, exclusive_min=True)
    weight_decay: float = option(0.2, "AdamW weight decay (not on gains, biases, embeddings, logit scale)",
                                 minimum=0.0)
    clip_grad_norm: float | None = option(1.0, "gradient-norm clip; null or 0: no clipping", minimum=0.0, nullable=True)
    skip_nonfinite_steps: int = option(0, "steps with a NaN/inf loss or gradient norm whose update is skipped "
                                       "(counted) before the run stops as diverged; 0: stop at the first", minimum=0)


@dataclass(frozen=True)
class ComputeOptions(Options):
    """``experiment.compute``: how the model step runs on the device (never what it computes on the CPU default)."""

    fused_adamw: Any = option("auto", "auto: torch's fused AdamW kernel on cuda, the plain loop on cpu | true | false",
                              kind="choice", choices=("auto", True, False), says="auto, true or false")
    tf32: bool = option(True, "cuda: TF32 tensor cores for the fp32 matmuls/convolutions left outside bf16 autocast")
    compile: bool = option(False, "true: torch.compile the model's forward (first steps compile; opt-in)")
    grad_checkpointing: bool = option(False, "true: recompute activations in backward (ViT-L/H/g/bigG at batch 512: "
                                      "e.g. ViT-L/14 finetuning from 126 to 16 GB at +22% FLOPs; the budget still "
                                      "counts the plain step; docs/compute.md)")


@dataclass(frozen=True)
class WSDOptions(Options):
    """``experiment.scheduler.wsd``: warmup-stable-decay across the whole stream (name=wsd)."""

    decay: float = option(0.2, "the final decay: fraction of the stream's steps (< 1) or number of final tasks (>= 1)",
                          minimum=0.0)
    task_cooldown: bool = option(False, "true: also cool every task down to the floor over its last `cooldown` steps, "
                                 "re-warm at the next")


@dataclass(frozen=True)
class SchedulerOptions(Options):
    """``experiment.scheduler``: learning rate per (task, step); formulas in fif.optim.schedules, docs/schedules.md."""

    name: str = option("cosine_with_linear_warmup", "within a task: constant | cosine_with_linear_warmup | "
                       "warmup_stable_cooldown | rsqrt; whole stream: cosine_with_linear_warmup_and_recovery | "
                       "cosine_with_linear_warmup_and_dynamic_recovery | rsqrt_with_recovery | wsd",
                       choices=SCHEDULES)
    warmup: float = option(0.1, "fraction of the task's steps (< 1) or a number of steps (wsd: the stream's one "
                           "warmup)", minimum=0.0)
    cooldown: float = option(0.1, "warmup_stable_cooldown, rsqrt(_with_recovery), wsd.task_cooldown: last fraction "
                             "(< 1) or steps of a task", minimum=0.0)
    cooldown_shape: str = option("linear", "warmup_stable_cooldown and wsd cooldowns/decay: linear | 1-sqrt (rsqrt "
                                 "cools linearly to 0, as the reference)", choices=COOLDOWN_SHAPES)
    min_lr_ratio: float = option(1.0e-3, "floor of every decay: experiment.optimizer.lr * this", minimum=0.0,
                                 maximum=1.0)
    meta: str = option("constant", "peak of task t across the stream (within-task names only): constant (re-warm to lr "
                       "every task) | linear | cosine | rsqrt", choices=META)
    recovery_mode: str = option("autoregressive", "rsqrt_with_recovery: autoregressive | continued | recovered; the "
                                "cosine recoveries: autoregressive", choices=RECOVERY_MODES)
    wsd: WSDOptions = block(WSDOptions, "warmup-stable-decay")
    tolerated: ClassVar[tuple[str, ...]] = ("cosine_lr_mul",)  # configs of older versions (now a reference alias)

    def validate(self, key: str) -> None:
        """A meta-schedule needs a within-task shape; the cosine recoveries have one mode."""
        if self.name in STREAM and self.meta != "constant":
            raise FifError(f"{key}.meta={self.meta!r} applies to the within-task schedules "
                           f"({', '.join(WITHIN_TASK)}); {key}.name={self.name} already schedules the whole stream")
        if self.name.startswith("cosine_with_linear_warmup_and") and self.recovery_mode != "autoregressive":
            raise FifError(f"{key}.recovery_mode={self.recovery_mode!r} is not valid for {key}.name={self.name} "
                           f"(expected autoregressive; continued and recovered are rsqrt_with_recovery modes)")


@dataclass(frozen=True)
class ExperimentOptions(Options):
    """``experiment``: what is trained, on what, how."""

    seed: int = option(0, "seed of sampling, augmentation and caption choice", minimum=0, maximum=MAX_SEED,
                       says=f"a whole number in [0, {MAX_SEED}] (NumPy's seed range)")
    backbone: BackboneOptions = block(BackboneOptions, "the model")
    task: TaskOptions = block(TaskOptions, "tasks")
    dataset: DatasetOptions = block(DatasetOptions, "data")
    optimizer: OptimizerOptions = block(OptimizerOptions, "AdamW")
    compute: ComputeOptions = block(ComputeOptions, "device execution")
    scheduler: SchedulerOptions = block(SchedulerOptions, "learning-rate schedule")


@dataclass(frozen=True)
class EvaluationOptions(Options):
    """``evaluation``: what each evaluation point scores."""

    batch_size: int = option(512, "evaluation batch size", minimum=1)
    templates: Any = option(None, "list of prompt templates to ensemble; null: each dataset's primer", kind="any")
    zero_shot_only: bool = option(False, "true: score the model before any update and train nothing (the reference's "
                                  "zeroshot_only); results.json's final point is the zero-shot one")
    validate_on_subset: float | None = option(None, "fraction f: during the stream score min(N, max(2*classes, 300, "
                                              "floor(f*N))) samples per dataset (class-balanced, seeded); null or 1: "
                                              "full sets. Zero-shot and the last task: always full", kind="number",
                                              minimum=0.0, maximum=1.0, exclusive_min=True,
                                              says="null (full sets) or a fraction in (0, 1]")
    every_n_samples: int | None = option(None, "also evaluate inside each task every N samples of the task (the "
                                         "stability gap), on the validate_on_subset subsets (full sets when unset); "
                                         "null: task ends only", kind="whole", minimum=1,
                                         says="null (evaluate at task ends only) or a positive number of samples")
    gap_samples: Any = option([], "also evaluate inside each task after these sample counts (the reference's "
                              "gap_samples)", kind="any")
    ka_datasets: str = option("stream", "stream: A_KA averages over the adaptation datasets the stream contains (the "
                              "reference); registry: over all of the registry's", choices=("stream", "registry"),
                              says="one of stream, registry (stream = the adaptation datasets the stream contains, "
                              "registry = all of the registry's)")
    datasets: Any = option(None, "fif eval only (`fif run` ignores it): null = every adaptation and evaluation "
                           "dataset of the registry present in the root; [a,b] = exactly those", kind="any")

    def validate(self, key: str) -> None:
        """gap_samples: a list of positive whole numbers."""
        values = list(self.gap_samples or [])
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
        if bad:
            raise FifError(f"{key}.gap_samples={values!r} is not valid: expected a list of positive sample counts "
                           f"inside each task (not {bad[0]!r})")


@dataclass(frozen=True)
class LogOptions(Options):
    """``log``: where a run is written, what is kept, where it is tracked."""

    folder: str = option("runs", "runs are written to <folder>/<name>/", kind="any")
    name: str | None = option(None, "null: <method>_<timestamp>", kind="any")
    checkpoint: bool = option(False, "also save the final model weights (<run>/final_model.pt, atomic)")
    progress: bool = option(True, "progress bars")
    keep_checkpoints: int = option(2, "resume checkpoints kept in <run>/checkpoints (the newest K); 0: write none (no "
                                   "resume)", minimum=0)
    checkpoint_every_steps: int = option(0, "also checkpoint every N optimizer steps (counted over the run); 0: at "
                                         "task ends only", minimum=0)
    resume: Any = option(None, "true: continue the killed run at <folder>/<name> (start it if absent); /path/to/run: "
                         "continue that run", kind="any")
    resume_force: bool = option(False, "resume even though the config (or the world size) differs from the run's "
                                "(differing keys go to events.jsonl)")
    tensorboard: bool = option(False, "also write TensorBoard event files to <run>/tensorboard (needs the [track] "
                               "extra)")
    use: bool = option(False, "Weights & Biases logging (reference name; needs the [track] extra)")
    wandb_mode: str = option("online", "online | offline (writes <run>/wandb; upload later with `wandb sync`) | "
                             "disabled", choices=("online", "offline", "disabled"))
    wandb_key: str | None = option(None, "W&B API key (prefer WANDB_API_KEY); null: WANDB_API_KEY or `wandb login`; never "
                                   "written to the run folder and redacted from what W&B gets", kind="any")
    project: str = option("fomo-in-flux", "W&B project (reference name)", kind="any")
    entity: str | None = option(None, "W&B user or team; null: the key's default entity", kind="any")
    group: str | None = option(None, "W&B run group, e.g. one per sweep (reference name)", kind="any")


@dataclass(frozen=True)
class ContinualOptions(Options):
    """``continual``: the update method; its own options are ``continual.<method>.*`` (declared with the method)."""

    method: str = option("finetune", "the update method (docs/options.md lists each method's block)")
    open: ClassVar[bool] = True  # the methods' blocks, checked by their own declarations when built


@dataclass(frozen=True)
class RunOptions(Options):
    """The whole run config (presets add blocks of their own, e.g. ``mini``)."""

    experiment: ExperimentOptions = block(ExperimentOptions, "what is trained, on what, how")
    continual: ContinualOptions = block(ContinualOptions, "the update method")
    evaluation: EvaluationOptions = block(EvaluationOptions, "evaluation points")
    log: LogOptions = block(LogOptions, "run folder and tracking")
    device: str = option("auto", "auto | cpu | cuda | cuda:N", kind="any")
    open: ClassVar[bool] = True  # preset blocks (mini.seed) and Hydra's own keys


def check_run_options(cfg: Any) -> RunOptions:
    """The composed config checked against every declaration (a bad value is one line naming its key)."""
    return RunOptions.from_block(cfg, "")
