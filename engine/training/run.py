"""A whole training run: build from the config, train, validate, log, checkpoint, resume, deploy.

Outputs go to one folder: ``config.yaml``, ``log.jsonl``, ``last.pth``, ``best.pth``, ``deploy.pth`` (the best
head as a standalone network) and ``curves.png``. Scripts and the docs rely on these names. A folder holds
one run: a fresh run into a folder that holds one is refused (``--resume`` or ``--overwrite``), a second
process training into the same folder is refused by a lock, and nothing is written before these checks and
the build of every part have passed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets.codec import HeatmapCodec
from datasets.registry import build_codec, build_dataset, scoring_section, skeleton_of
from engine.experiment.checks import check_input_size, model_section_for
from engine.experiment.config import ExperimentConfig, save_config
from engine.inference.loops import validate
from engine.inference.pipeline import Pipeline
from engine.inference.predictor import Predictor
from engine.runtime.distributed import EpochShuffleSampler, ShardSampler, per_process_batch
from engine.runtime.execution import rng_state, runtime_from_config, seed_everything, set_rng_state
from engine.runtime.loader import make_loader
from engine.training.build import build_optimizer, build_scheduler, deploy_head, load_init_weights
from engine.training.curves import plot_curves
from engine.training.log import append_record, truncate_log
from engine.training.loop import select_head, train_one_epoch
from engine.training.resume import OPTIMIZER_KEYS, allowed_changes, check_epochs, follow_train_config
from engine.training.teachers import build_teachers, check_loss_teachers, check_teacher_outputs
from losses.joints_mse import check_batch_keys
from losses.registry import build_loss
from models.distiller import Distiller
from models.output import PoseModel
from models.registry import build_model
from utils.checkpoint import load_checkpoint, load_model_weights, save_checkpoint, tensor_bytes
from utils.disk import DiskFullError, disk_full, is_disk_full
from utils.errors import CheckpointError, ConfigError
from utils.run_folder import RunFolder

CONFIG_FILE, LOG_FILE, LAST, BEST, DEPLOY, CURVES = (
    "config.yaml",
    "log.jsonl",
    "last.pth",
    "best.pth",
    "deploy.pth",
    "curves.png",
)
RUN_FILES = (CONFIG_FILE, LOG_FILE, LAST, BEST, DEPLOY, CURVES, "tensorboard")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with a message that says what was kept and how to continue."""


def blame(config: ExperimentConfig, error: ConfigError) -> ConfigError:
    """An error about a config value, naming where the value came from (a --set override or the yaml file)."""
    return config.origin.blame(error) if config.origin is not None else error


class TrainingRun:
    """Everything one experiment's training needs, built from its config."""

    def __init__(self, config: ExperimentConfig, output_dir: Path, *, workers: int | None = None) -> None:
        self.config = config
        self.folder = RunFolder(Path(output_dir), RUN_FILES)
        self.output_dir = self.folder.path
        self.workers = config.runtime.workers if workers is None else workers
        self.runtime = runtime_from_config(config.runtime, config.origin)
        self.codec: HeatmapCodec = build_codec(config.data)
        self.skeleton = skeleton_of(config.data)
        try:
            self.model_section = model_section_for(config.model, self.skeleton.num_joints)
            student_output = check_input_size(self.model_section, self.codec)
        except ConfigError as error:
            raise blame(config, error) from None
        self.train_set = build_dataset(
            config.data, split="train", train=True, seed=config.seed, codec=self.codec
        )
        self.val_set = build_dataset(
            scoring_section(config.data), split="valid", train=False, seed=config.seed, codec=self.codec
        )
        self.val_set.check_scoring()  # e.g. MPII's gt_valid.mat: now, not at the first validation
        seed_everything(config.seed)
        self.network: PoseModel = build_model(self.model_section)
        if config.train.init_from:
            load_init_weights(self.network, config.train.init_from)
        check_loss_teachers(config)
        self.pipeline = Pipeline.from_config(config, self.codec)
        teachers, teacher_outputs = build_teachers(config, self.pipeline)
        self.trainee: PoseModel = Distiller(self.network, teachers) if teachers else self.network
        self.model = self.runtime.prepare(self.trainee)
        self.loss_fn = build_loss(config.loss).to(self.runtime.device)
        check_batch_keys(self.loss_fn, self.train_set.batch_keys, config.loss["name"], config.data["name"])
        check_teacher_outputs(self.loss_fn, student_output, teacher_outputs, config)
        self.optimizer = build_optimizer(self.trainee, config.train)
        self.scheduler = build_scheduler(self.optimizer, config.train)
        runtime = self.runtime
        self.sampler = EpochShuffleSampler(
            len(self.train_set),
            config.seed,
            global_batch=config.train.batch_size,
            rank=runtime.rank,
            world_size=runtime.world_size,
            drop_last=config.train.drop_last,
        )
        self.train_loader = make_loader(
            self.train_set,
            per_process_batch(config.train.batch_size, runtime.world_size),
            self.workers,
            runtime,
            self.sampler,
            drop_last=config.train.drop_last,
        )
        shard = (
            ShardSampler(len(self.val_set), runtime.rank, runtime.world_size) if runtime.distributed else None
        )
        self.val_loader = make_loader(self.val_set, config.test.batch_size, self.workers, runtime, shard)
        self.predictor = Predictor(runtime.inference_model(self.model), self.pipeline, self.runtime)
        self.start_epoch = 0
        self.best_metric = float("-inf")
        self.best_head = ""
        self.best_epoch = -1
        self.best_metrics: dict[str, float] = {}

    # ---------------------------------------------------------------- state
    def state(self, epoch: int) -> dict[str, Any]:
        """A training checkpoint after ``epoch`` (0-based) has finished: the bare student, never a teacher."""
        return {
            "kind": "train",
            "epoch": epoch,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "runtime": self.runtime.state_dict(),
            "best_metric": self.best_metric,
            "best_head": self.best_head,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "teachers": self.trainee.teacher_records(),
            "codec": self.codec.to_dict(),
            "pipeline": self.pipeline.to_dict(),
            "rng": rng_state(),
            "config": self.config.to_dict(),
        }

    def resume(self, allow_change: Sequence[str] = ()) -> dict[str, tuple[Any, Any]]:
        """Continue from ``last.pth``: model, optimizer, scheduler, epoch, best score and RNG states.

        The run continues under the config saved with its weights: a config that differs from it is refused
        unless each differing key is in ``allow_change``; returns the allowed changes ``{key: (old, new)}``.
        """
        path = self.output_dir / LAST
        state = load_checkpoint(path)
        if state.get("kind") != "train":
            raise CheckpointError(f"{path} is not a training checkpoint and cannot be resumed")
        changes = {}
        if "config" in state:
            changes = allowed_changes(state["config"], self.config.to_dict(), allow_change, self.output_dir)
        check_epochs(self.config.train.epochs, int(state["epoch"]) + 1, self.output_dir)
        self.check_teachers(state.get("teachers", {}), path)
        load_model_weights(self.network, state["model"], str(path))
        if "train.optimizer" not in changes:  # another optimizer starts with fresh moments
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if any(key in (*OPTIMIZER_KEYS, "train.optimizer") for key in changes):
            follow_train_config(self.optimizer, self.scheduler, self.config.train)
        self.runtime.load_state_dict(state.get("runtime", {}))
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best_metric = float(state["best_metric"])
        self.best_head = str(state["best_head"])
        self.best_epoch = int(state["best_epoch"])
        self.best_metrics = dict(state.get("best_metrics", {}))
        return changes

    def check_teachers(self, saved: dict[str, dict[str, str]], path: Path) -> None:
        """Refuse to resume with a teacher file that changed since the run started (its sha256 differs)."""
        for name, teacher in self.trainee.teacher_records().items():
            record = saved.get(name)
            if record is None:
                continue
            if record["sha256"] != teacher["sha256"]:
                raise CheckpointError(
                    f"cannot resume {path}: teacher '{name}' ({teacher['path']}) is not the file the run started "
                    f"with (sha256 {teacher['sha256'][:12]}... now, {record['sha256'][:12]}... then, when it was "
                    f"{record['path']}). Restore the original teacher checkpoint, or start a new run with "
                    "another --output-dir."
                )

    # ---------------------------------------------------------------- loop
    def fit(
        self,
        *,
        resume: bool = False,
        overwrite: bool = False,
        allow_change: Sequence[str] = (),
        log=print,
    ) -> dict[str, Any]:
        """Train to the configured number of epochs; returns the last validation summary.

        ``allow_change``: config keys a resumed run may change (``--allow-change``). A disk that fills up is
        one paragraph naming the folder and the space a checkpoint needs; every earlier checkpoint is intact.
        """
        try:
            return self._fit(resume=resume, overwrite=overwrite, allow_change=allow_change, log=log)
        except DiskFullError as error:
            raise self._continue_with_resume(error) from None
        except OSError as error:  # a small write (log.jsonl, config.yaml, curves.png) on a full disk
            if not is_disk_full(error, self.output_dir, 0):
                raise
            full = disk_full(self.output_dir, self.checkpoint_size(), "the run's log and checkpoints")
            raise self._continue_with_resume(full) from None

    def _continue_with_resume(self, error: DiskFullError) -> DiskFullError:
        """A full-disk error that says how the run continues once space is free (with --resume, if it can)."""
        last = self.output_dir / LAST
        if not (self.runtime.is_main and last.is_file()):
            return error
        epoch = load_checkpoint(last)["epoch"]
        return DiskFullError(f"{error} with --resume: the run continues from {last} (after epoch {epoch})")

    def checkpoint_size(self) -> int:
        """About the bytes of one checkpoint: the size of ``last.pth``, else the weights and optimizer moments."""
        last = self.output_dir / LAST
        if last.is_file():
            return last.stat().st_size
        train = self.config.train
        moments = 2 if train.optimizer in ("adam", "adamw") else int(train.momentum > 0)
        return tensor_bytes(self.network.state_dict()) * (1 + moments)

    def _fit(self, *, resume: bool, overwrite: bool, allow_change: Sequence[str], log) -> dict[str, Any]:
        config, runtime = self.config, self.runtime
        if not runtime.is_main:
            log = _quiet
        summary: dict[str, Any] = {}
        changes: dict[str, tuple[Any, Any]] = {}
        with self.folder.claim(
            resume=resume,
            overwrite=overwrite,
            main=runtime.is_main,
            agree=runtime.all_ranks,
            needed=self.checkpoint_size(),
        ):
            if resume:
                changes = self.resume(allow_change)
                truncate_log(self.output_dir / LOG_FILE, self.start_epoch)
                log(f"resumed from {self.output_dir / LAST} at epoch {self.start_epoch}")
                if changes:
                    listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
                    log(f"epoch {self.start_epoch}: changed by --allow-change: {listed}")
            if runtime.is_main:
                save_config(config, self.output_dir / CONFIG_FILE)
            writer = _tensorboard(self.output_dir) if runtime.is_main else None
            active: list[str] = []
            has_teachers = bool(self.trainee.teacher_records())
            try:
                for epoch in range(self.start_epoch, config.train.epochs):
                    started = time.time()
                    self.sampler.set_epoch(epoch)
                    self.train_set.set_epoch(epoch)
                    now_active = self.trainee.set_epoch(epoch)
                    if has_teachers and (now_active != active or epoch == self.start_epoch):
                        log(f"epoch {epoch}: teachers in use: {', '.join(now_active) or 'none'}")
                    active = now_active
                    lr = self.optimizer.param_groups[0]["lr"]
                    terms = train_one_epoch(
                        self.model,
                        self.loss_fn,
                        self.train_loader,
                        self.optimizer,
                        epoch,
                        runtime,
                        max_iters=config.train.iters_per_epoch,
                    )
                    self.scheduler.step()
                    record: dict[str, Any] = {"epoch": epoch, "lr": lr, "train": terms}
                    if has_teachers:
                        record["teachers"] = active
                    if changes and epoch == self.start_epoch:
                        record["changed"] = {key: list(change) for key, change in changes.items()}
                    last_epoch = epoch == config.train.epochs - 1
                    if (epoch + 1) % config.train.val_every == 0 or last_epoch:
                        summary = self._validate(epoch, terms, record, log)
                    record["seconds"] = round(time.time() - started, 2)
                    if runtime.is_main:
                        # The log line first: a kill between the two leaves a line that --resume drops and
                        # redoes (truncate_log), never a checkpoint whose epoch the log lacks.
                        append_record(self.output_dir / LOG_FILE, record)
                        save_checkpoint(self.state(epoch), self.output_dir / LAST)
                        if writer is not None:
                            _write_tensorboard(writer, record)
            except KeyboardInterrupt:
                raise Interrupted(self._interrupted_message()) from None
            finally:
                if writer is not None:
                    writer.close()
            if runtime.is_main:
                self.finish(log)
        return summary

    def _validate(self, epoch: int, terms: dict[str, float], record: dict[str, Any], log) -> dict[str, Any]:
        """Validate every head, log it, select, and write ``best.pth`` on an improvement (a tie: the later epoch)."""
        results = validate(self.predictor, self.val_loader)
        head, metric = select_head(results, self.config.test.select)
        record["val"] = {name: result.table for name, result in results.items()}
        record["metric"] = {name: result.metric for name, result in results.items()}
        record["selected"] = {"head": head, "metric": metric}
        improved = metric >= self.best_metric
        if improved:
            self.best_metric, self.best_head, self.best_epoch = metric, head, epoch
            self.best_metrics = dict(record["metric"])
        log(_epoch_line(epoch, terms, results, head, metric, self.best_metric, self.best_head))
        if improved and self.runtime.is_main:
            save_checkpoint(self.state(epoch), self.output_dir / BEST)
        return {"epoch": epoch, "results": results, "head": head, "metric": metric}

    def _interrupted_message(self) -> str:
        last = self.output_dir / LAST
        if last.is_file():
            epoch = load_checkpoint(last)["epoch"]
            return (
                f"interrupted: {last} holds the run after epoch {epoch} and is intact; continue with the same "
                "command and --resume"
            )
        return (
            f"interrupted before the first epoch finished: no checkpoint was written in {self.output_dir}; "
            "start the run again with --overwrite (there is nothing to resume)"
        )

    def finish(self, log=print) -> None:
        """Extract the best head of ``best.pth`` as ``deploy.pth`` and draw ``curves.png``."""
        best_path = self.output_dir / BEST
        if best_path.is_file():
            state = load_checkpoint(best_path)
            load_model_weights(self.network, state["model"], str(best_path))
            head = deploy_head(self.network, state["best_head"], state.get("best_metrics", {}))
            network, section = self.network.deploy(head)
            save_checkpoint(
                {
                    "kind": "deploy",
                    "model": network.state_dict(),
                    "model_config": section,
                    "source_head": head,
                    "epoch": state["epoch"],
                    "metric": state.get("best_metrics", {}).get(head, state["best_metric"]),
                    "codec": self.codec.to_dict(),
                    "pipeline": self.pipeline.to_dict(),
                    "config": self.config.to_dict(),
                },
                self.output_dir / DEPLOY,
            )
            log(
                f"best: {state['best_head']} at epoch {state['epoch']} ({state['best_metric']:.3f}); "
                f"deployable network ({head}) saved to {self.output_dir / DEPLOY}"
            )
        plot_curves(self.output_dir / LOG_FILE, self.output_dir / CURVES)


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The log of processes other than the main one."""


def _epoch_line(epoch, terms, results, head, metric, best, best_head) -> str:
    loss = ", ".join(f"{k}={v:.4g}" for k, v in terms.items() if "/" not in k)
    scores = ", ".join(f"{name}={result.metric:.2f}" for name, result in results.items())
    return f"epoch {epoch}: {loss} | {scores} | selected {head}={metric:.2f} (best {best_head}={best:.2f})"


def _tensorboard(output_dir: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):
        return None
    return SummaryWriter(log_dir=str(output_dir / "tensorboard"))


def _write_tensorboard(writer, record: dict[str, Any]) -> None:
    epoch = record["epoch"]
    writer.add_scalar("lr", record["lr"], epoch)
    for name, value in record["train"].items():
        writer.add_scalar(f"train/{name}", value, epoch)
    for name, value in record.get("metric", {}).items():
        writer.add_scalar(f"val/{name}", value, epoch)
