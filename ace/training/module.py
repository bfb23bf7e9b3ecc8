"""The one LightningModule: plain training for vanilla models, primal–dual training for ACE models.

It is model- and data-agnostic. The network (any ``nn.Module`` taking a batch) may contain
:class:`~ace.core.homotopic.HomotopicBranch` layers; the :class:`~ace.data.base.Task` supplies the
loss, the declared metrics (name, unit, direction, accumulator) and the group action; the
constraint (``ace.core.constraints``) owns λ and u; the data module's transforms act on batches.

Evaluation protocol (``ace_algorithm.md`` §6): validation and test share one path
(:meth:`evaluation_step`): for each *mode* — ``eq`` (the projection f_eq, γ := 0, branches
skipped) and, for ACE models, ``relaxed`` (f_eq + γ f_neq) — every declared metric is
accumulated and logged as ``<stage>/<metric>/<mode>``. One checkpoint per mode keeps that mode's
best validation epoch of the task's primary metric, in the metric's direction; ``last.ckpt`` is
written every epoch. The test numbers of each mode at its own best checkpoint come from
``trainer.test`` on that checkpoint (:func:`ace.training.results.test_best_checkpoints`).
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from ace.core.constraints import HomotopyConstraint
from ace.core.equivariance import equivariance_error
from ace.core.homotopic import (
    equivariant_mode,
    gammas,
    homotopic_branches,
    num_gammas,
    relaxed_mode,
)
from ace.core.step import primal_dual_step
from ace.data.base import Task
from ace.training.callbacks import ReplicaConsistency, ValidateOnLastEpoch
from ace.training.step_logs import StepScalars

MODES = ("eq", "relaxed")
STAGES = ("val", "test")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; training stops before the parameters are touched."""


def stream_seed(seed: int, stage: str, epoch: int) -> int:
    """Seed of the random stream of one (run seed, stage, epoch), for the batch transforms."""
    return zlib.crc32(f"{seed}/{stage}/{epoch}".encode())


class ACEModule(L.LightningModule):
    """Train a (possibly homotopic) network, optionally under an ACE constraint.

    Args:
        net: the network; ``net(batch)`` returns the prediction the task's loss expects.
        task: loss, metrics and group action of the data set (from the DataModule).
        optimizer: partial of the primal optimizer (θ, γ and the slacks u share it, §4).
        constraint: partial ``(num_constraints) -> HomotopyConstraint`` or None (no constraint:
            vanilla training, or the unconstrained f_eq + f_neq baseline).
        scheduler: optional partial of a primal LR scheduler (stepped once per epoch).
        grad_clip_norm: clip the primal gradient norm (official EGNO: 1.0).
        eq_error_samples: random rotations per sample for the per-epoch equivariance error
            (paper: 5). The error is measured at the end of each training epoch on that epoch's
            last training batch, in relaxed mode. 0 disables it.
        compile: wrap the forward pass in ``torch.compile`` (state-dict keys are unaffected).
        checkpoint_dir: where ``best_eq.ckpt``, ``best_relaxed.ckpt`` and ``last.ckpt`` go.
        seed: seeds the equivariance-error rotations and the evaluation transforms.
        log_test_metric: also evaluate the test set at every validation (``test/<metric>/<mode>``
            learning curves; selection uses validation only).
        regularizer: optional ``regularizer(net) -> scalar`` added to the training loss after
            each forward (logged as ``train/regularizer``), e.g. the Lie-derivative penalty of
            the "SEGNN Rel." baseline (:class:`ace.models.relaxation.LieDerivativePenalty`).
        gamma_lr: None: the γ_i share the primal optimizer's parameter group (the paper, §4).
            A float puts the γ_i in a parameter group of their own with this learning rate and
            no weight decay (a decay would pull γ to 0 on its own, outside the constraint). Adam
            moves each γ by at most about its lr per step, so the lr sets how fast the dual can
            drive γ 1 → 0.

    Training and evaluation transforms (SO(3) augmentation, rotated test clouds) are the data
    module's ``train_transform`` / ``eval_transform`` (see :mod:`ace.data.transforms`).
    """

    def __init__(
        self,
        net: nn.Module,
        task: Task,
        optimizer: Callable[..., torch.optim.Optimizer],
        constraint: Callable[[int], HomotopyConstraint] | None = None,
        scheduler: Callable[..., Any] | None = None,
        grad_clip_norm: float | None = None,
        eq_error_samples: int = 5,
        compile: bool = False,
        checkpoint_dir: str | None = None,
        seed: int = 0,
        log_test_metric: bool = True,
        regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
        gamma_lr: float | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.grad_clip_norm = grad_clip_norm
        self.eq_error_samples = eq_error_samples
        self.checkpoint_dir = checkpoint_dir
        self.seed = seed
        self.log_test_metric = log_test_metric
        self.regularizer = regularizer
        if gamma_lr is not None and not gamma_lr > 0:
            raise ValueError(f"model.gamma_lr must be a positive learning rate or null, got {gamma_lr}")
        self.gamma_lr = gamma_lr

        self.num_gammas = num_gammas(net)
        self.modes = MODES if self.num_gammas > 0 else ("eq",)
        #: modes that validation and test evaluate (``evaluate_checkpoint`` narrows it)
        self.eval_modes: tuple[str, ...] = self.modes
        self.constraint: HomotopyConstraint | None = None
        if constraint is not None:
            if self.num_gammas == 0:
                raise ValueError(
                    "a constraint was configured but the model has no homotopic branches; "
                    "use constraint=none, or a model with ACE branches (model.net.ace_branches=true)"
                )
            self.constraint = constraint(num_constraints=self.num_gammas)
        # Not registered as a submodule: the compiled wrapper shares the parameters of self.net.
        self._forward_fn = torch.compile(net) if compile else net
        # One accumulator per (stage, mode, metric); non-persistent states: not in checkpoints.
        self.metrics = nn.ModuleDict({
            f"{stage}_{mode}": nn.ModuleDict({spec.name: spec.make() for spec in task.metrics})
            for stage in STAGES for mode in self.modes
        })
        self.train_transform = self.eval_transform = None
        self._eval_generator: torch.Generator | None = None
        self._train_generator: torch.Generator | None = None
        #: epoch that seeds evaluation transforms when set (re-evaluating a checkpoint); None:
        #: the current epoch
        self.eval_epoch: int | None = None
        self._last_train_batch: Any = None
        #: (γ, s) of the epoch's latest step, logged once more at the epoch end
        self._last_trace: tuple[torch.Tensor, torch.Tensor | None] | None = None
        #: device-side epoch sums of the step scalars and the first non-finite step
        self._step_scalars = StepScalars()
        self._epoch_t0 = 0.0
        # Seconds per training / validation epoch of this process (Table 3; results.json medians).
        self.epoch_seconds: dict[str, list[float]] = {"train": [], "val": []}

    # ------------------------------------------------------------------ forward & optimizers
    def forward(self, batch: Any) -> torch.Tensor:
        return self._forward_fn(batch)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        self.train_transform = getattr(datamodule, "train_transform", None)
        self.eval_transform = getattr(datamodule, "eval_transform", None)

    def primal_parameter_groups(self) -> list[torch.nn.Parameter] | list[dict[str, Any]]:
        """θ, γ and the slacks u; with ``gamma_lr``, the γ_i as a group of their own."""
        params = list(self.net.parameters())
        if self.constraint is not None:
            params += self.constraint.primal_parameters()
        if self.gamma_lr is None:
            return params
        gamma_params = [branch.gamma for branch in homotopic_branches(self.net)]
        if not gamma_params:
            raise ValueError("model.gamma_lr is set but the model has no homotopic branches (no γ)")
        ids = {id(p) for p in gamma_params}
        return [
            {"params": [p for p in params if id(p) not in ids]},
            {"params": gamma_params, "lr": self.gamma_lr, "weight_decay": 0.0},
        ]

    def configure_optimizers(self):
        primal = self.optimizer_factory(self.primal_parameter_groups())
        optimizers = [primal]
        if self.constraint is not None:
            optimizers.append(self.constraint.make_dual_optimizer())
        if self.scheduler_factory is None:
            return optimizers
        return optimizers, [{"scheduler": self.scheduler_factory(primal), "interval": "epoch"}]

    def configure_callbacks(self):
        callbacks: list[L.Callback] = [ValidateOnLastEpoch(), ReplicaConsistency()]
        if self.checkpoint_dir is None:
            return callbacks
        primary = self.task.primary
        for mode in self.modes:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=self.checkpoint_dir,
                    filename=f"best_{mode}",
                    monitor=f"val/{primary.name}/{mode}",
                    mode=primary.direction,
                    save_top_k=1,
                    save_on_train_epoch_end=False,  # after validation, whatever the interval
                    auto_insert_metric_name=False,
                    enable_version_counter=False,
                )
            )
        callbacks.append(
            ModelCheckpoint(
                dirpath=self.checkpoint_dir,
                filename="last",
                monitor=None,
                save_top_k=1,
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            )
        )
        return callbacks

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._epoch_t0 = self._epoch_t1 = time.perf_counter()
        self._step_scalars.reset()
        # The training transform's own stream: augmentation depends on (seed, epoch) only, not
        # on how often evaluation ran (DataLoader iterators draw from the global stream), and a
        # run resumed at an epoch boundary draws exactly the same elements.
        self._train_generator = torch.Generator().manual_seed(
            stream_seed(self.seed, "train", self.current_epoch))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.device.type == "cuda" and self.trainer.is_last_batch:
            torch.cuda.synchronize(self.device)  # once per epoch: the time includes the queued work
        self._epoch_t1 = time.perf_counter()  # the epoch's training time ends at its last batch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.train_transform is not None:
            batch = self.train_transform(batch, self.task.group_action, self._train_generator)
        self._last_train_batch = batch
        step = self.global_step  # the primal step below increments it
        pred = self(batch)
        loss = self.task.loss(pred, batch)
        objective = loss
        scalars = {"train/loss": loss}
        if self.regularizer is not None:
            scalars["train/regularizer"] = penalty = self.regularizer(self.net)
            objective = loss + penalty
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        primal = optimizers[0]
        dual = optimizers[1].optimizer if self.constraint is not None else None
        gamma = gammas(self.net) if self.num_gammas else None

        def clip() -> None:
            if self.grad_clip_norm:
                self.clip_gradients(
                    primal, gradient_clip_val=self.grad_clip_norm, gradient_clip_algorithm="norm"
                )

        out = primal_dual_step(
            objective, gamma, self.constraint, primal, dual,
            backward=self.manual_backward, before_primal_step=clip,
        )
        if gamma is not None:
            scalars["train/lagrangian"] = out.lagrangian
            self._last_trace = (gamma.detach(), out.slack)
        # No host read here: the epoch sums and the finiteness flag stay on the device.
        self._step_scalars.add(scalars, self.task.batch_size(batch), step, objective)
        if self._step_logs_are_written():
            self._check_finite()
            values = {f"{k}_step": v for k, v in scalars.items()}
            if self._last_trace is not None:
                values.update(self._trace(*self._last_trace))
            host = self._write_logs(values)
            self.log("train/loss", host["train/loss_step"], prog_bar=True, logger=False,
                     on_step=True, on_epoch=False)  # the progress bar's value
        return loss.detach()

    def _step_logs_are_written(self) -> bool:
        """Whether this step's logs are written (every ``trainer.log_every_n_steps``)."""
        connector = getattr(self._trainer, "_logger_connector", None)
        return True if connector is None else bool(connector.should_update_logs)

    def _write_logs(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Write step values straight to the loggers, read back in one transfer.

        ``self.log`` costs about 1 ms per value on a CPU (profiled over 3 ACE N-body epochs: 0.63 s
        through ``self.log`` per-step and per-layer values, about 8 % of the time; 0.07 s now); the
        rows are those Lightning would write (same step index and ``epoch`` column), through its
        own logger connector. Returns the values as floats.
        """
        scalars = StepScalars.host(values)
        self.trainer._logger_connector.log_metrics(scalars)  # a no-op without loggers
        return scalars

    def _check_finite(self) -> None:
        """Stop if a training objective was NaN/inf since the epoch began (one host read).

        Called on the steps whose logs are written, before validation and at the end of each
        training epoch: so before any checkpoint that could hold the damaged parameters.
        """
        step = self._step_scalars.first_nonfinite()
        if step is None:
            return
        raise NonFiniteLossError(
            f"training loss became NaN or inf at step {step} (epoch {self.current_epoch}); "
            f"training stopped at step {self.global_step}, before any checkpoint held the "
            f"damaged parameters. The last good checkpoint is "
            f"{Path(self.checkpoint_dir or '.') / 'last.ckpt'}. Lower the learning rate "
            "(model.optimizer.lr / constraint.dual_lr) or check the data for NaN/inf, then "
            "resume with ckpt_path=<that checkpoint>."
        )

    def ace_state(self, gamma: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-branch γ (current, or the given values), and λ and u of the constraint if any."""
        if gamma is None:
            gamma = gammas(self.net).detach() if self.num_gammas else torch.empty(0)
        state = {"gamma": gamma}
        if self.constraint is not None:
            state.update(self.constraint.state())
        return state

    def _trace(self, gamma: torch.Tensor, slack: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-branch traces under flat keys ``ace/<name>/layer_<i>``.

        γ and s are the values the step started from (γ^(t), s^(t)); λ and u are the values the
        step produced (λ^(t+1), u^(t+1)).
        """
        series = self.ace_state(gamma)
        if slack is not None:
            series["slack"] = slack
        trace = {f"ace/{name}/layer_{i}": v[i] for name, v in series.items() for i in range(len(v))}
        trace["ace/gamma_max"] = gamma.abs().max()
        trace["ace/gamma_abs_sum"] = gamma.abs().sum()
        return trace

    def on_train_epoch_end(self) -> None:
        # Validation (if any) ran between the last batch and this hook: not counted here.
        self._check_finite()
        self.epoch_seconds["train"].append(self._epoch_t1 - self._epoch_t0)
        self.log("time/train_epoch_s", self.epoch_seconds["train"][-1])
        for name, mean in self._step_scalars.epoch_means().items():
            self.log(f"{name}_epoch", mean)
        if self._last_trace is not None:
            # The epoch's last step, whatever log_every_n_steps: short runs have traces too.
            self._write_logs({f"{k}_epoch": v for k, v in self._trace(*self._last_trace).items()})
            self._last_trace = None
        schedulers = self.lr_schedulers()
        if schedulers is not None:
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()  # primal only; the dual step size stays constant (§4)
        if self.eq_error_samples > 0 and self._last_train_batch is not None:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.current_epoch)
            with relaxed_mode(self.net):
                err = equivariance_error(
                    self, self._last_train_batch, self.task.group_action,
                    num_samples=self.eq_error_samples, generator=generator,
                )
            self.log_dict({f"equivariance/{k}": v for k, v in err.items()})
        self._last_train_batch = None

    # ------------------------------------------------------------------ evaluation
    def model_step(self, batch: Any, mode: str) -> torch.Tensor:
        """The prediction for ``batch`` in ``mode`` (``eq``: γ := 0; ``relaxed``: learned γ)."""
        context = equivariant_mode if mode == "eq" else relaxed_mode
        with context(self.net):
            return self(batch)

    @torch.no_grad()
    def evaluation_step(self, batch: Any, stage: str, modes: Iterable[str]) -> None:
        """Transform the batch once (seeded stream), then update every metric of every mode."""
        if self.eval_transform is not None:
            batch = self.eval_transform(batch, self.task.group_action, self._eval_generator)
        for mode in modes:
            preds, target = self.task.metric_inputs(self.model_step(batch, mode), batch)
            for metric in self.metrics[f"{stage}_{mode}"].values():
                metric.update(preds, target)

    def _start_evaluation(self, stage: str) -> None:
        """Reset the stage's accumulators and seed its transform stream (run seed, stage, epoch)."""
        for mode in self.modes:
            for metric in self.metrics[f"{stage}_{mode}"].values():
                metric.reset()
        epoch = self.current_epoch if self.eval_epoch is None else self.eval_epoch
        self._eval_generator = torch.Generator().manual_seed(stream_seed(self.seed, stage, epoch))

    def _log_metrics(self, stage: str, modes: Iterable[str], prog_bar: bool = False) -> None:
        for mode in modes:
            for name, metric in self.metrics[f"{stage}_{mode}"].items():
                if metric.update_called:
                    self.log(f"{stage}/{name}/{mode}", metric.compute().float(),
                             prog_bar=prog_bar and name == self.task.primary.name)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING:
            self._check_finite()  # before validation can checkpoint this epoch's parameters
        self._start_evaluation("val")
        self._val_t0 = time.perf_counter()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation_step(batch, "val", self.eval_modes)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.eval_modes, prog_bar=True)
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        seconds = time.perf_counter() - self._val_t0
        if fitting:
            self.epoch_seconds["val"].append(seconds)
            self.log("time/val_epoch_s", seconds)
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.log_test_metric and datamodule is not None and fitting:
            # Curves only (Fig. 2): model selection never looks at these.
            self._start_evaluation("test")
            for batch in datamodule.test_dataloader():
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                self.evaluation_step(batch, "test", self.modes)
            self._log_metrics("test", self.modes)

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation_step(batch, "test", self.eval_modes)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.eval_modes)

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {  # plain types and tensors: loadable with weights_only=True
            "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states is None:
            return
        random.setstate(states["python"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if states["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
