"""Constraints on the homotopy parameters γ and their dual variables (``ace_algorithm.md`` §2–§4).

Every formulation stores the dual variables λ ∈ R^L (and, for the resilient one, the slacks
u ∈ R^L_+) as state of this module, so they travel with checkpoints. One training step is, in this
order (§4)::

    lagrangian, slack = constraint.lagrangian(task_loss, gamma)   # slack recorded before the step
    lagrangian.backward()                                         # λ held constant
    primal_optimizer.step(); constraint.project_primal()          # θ, γ, u; then u ≥ 0
    constraint.dual_step(dual_optimizer, slack)                   # λ ← [λ + η_d s]_(+)

With the plain-SGD dual optimizer (the default, as in the paper) the dual step is exactly
λ ← λ + η_d·s; with Adam it is the official code's update (λ moves by ≈ η_d·sign(s)). With nuPI
(Sohrabi et al., ICML 2024; ``cooper-optim``'s ``nuPI`` with ξ_{−1} = 0) it is the damped PI
update

    ξ_t = ν ξ_{t−1} + (1 − ν) s_t,    λ_{t+1} = λ_t + η_d (κ_I s_t + κ_P (ξ_t − ξ_{t−1})),

so the first step is η_d (κ_I + κ_P (1 − ν)) s_0; κ_P = 0, κ_I = 1 is plain ascent and
κ_P = κ_I = 1, ν = 0 optimistic ascent. ξ lives in the dual optimizer's state (checkpointed).

``penalty = c > 0`` adds the augmented-Lagrangian term (c/2)·Σ_i s_i² to the primal objective,
for every formulation (the official EGNO code's ``--auglag_const a`` adds a·s², i.e. c = 2a; like
it, the term also acts on satisfied inequality constraints).

Formulations
------------
* :class:`EqualityConstraint` — problem (P_I), Alg. 1: γ_i = 0, s = γ, λ free.
* :class:`ResilientConstraint` — problem (P_II), Alg. 2 *as corrected*: |γ_i| ≤ u_i,
  cost (ρ/2)‖u‖², s = |γ| − u, u ≥ 0 and λ ≥ 0 by projection.
* :class:`OneSidedConstraint` — **not Alg. 2**: what the official EGNO code runs under
  "resilience" (γ_i ≤ 0, s = γ, λ ≥ 0, no u). Kept only to compare with Table 1's ACE‡ rows.
"""

from __future__ import annotations

import torch
from cooper.optim import nuPI, nuPIInitType
from torch import nn

# nuPI's param groups hold this enum: checkpoints (loaded with weights_only=True) must accept it
torch.serialization.add_safe_globals([nuPIInitType])

__all__ = [
    "HomotopyConstraint",
    "EqualityConstraint",
    "ResilientConstraint",
    "OneSidedConstraint",
]

DUAL_OPTIMIZERS = ("sgd", "adam", "nupi")


class HomotopyConstraint(nn.Module):
    """Base class: L constraints on γ ∈ R^L with dual variables λ (``self.dual``).

    Args:
        num_constraints: L, the number of homotopic branches (one constraint per γ_i).
        dual_lr: η_d, the dual step size.
        dual_optimizer: ``"sgd"`` (plain gradient ascent, λ ← λ + η_d s — the paper's algorithms),
            ``"adam"`` (the official code; the Table 4 dual grids were tuned under it) or
            ``"nupi"`` (damped PI control of λ, module docstring).
        dual_adam_eps, dual_adam_betas: Adam settings (official EGNO uses eps = 1e-4).
        dual_kp, dual_ki, dual_ema_nu: nuPI's κ_P, κ_I and ν (only with ``"nupi"``).
        penalty: c ≥ 0 of the augmented-Lagrangian term (c/2)·‖s‖² (0: off, the paper's runs).
    """

    #: project λ onto R_+ after each dual step (inequality constraints only; §4 step 7)
    nonnegative_dual: bool = False

    def __init__(
        self,
        num_constraints: int,
        dual_lr: float,
        dual_optimizer: str = "sgd",
        dual_adam_eps: float = 1e-8,
        dual_adam_betas: tuple[float, float] = (0.9, 0.999),
        dual_kp: float = 0.0,
        dual_ki: float = 1.0,
        dual_ema_nu: float = 0.0,
        penalty: float = 0.0,
    ) -> None:
        super().__init__()
        if num_constraints < 1:
            raise ValueError(
                f"{type(self).__name__} needs at least one γ to constrain, got {num_constraints}; "
                "use constraint=none for a model without homotopic branches"
            )
        if dual_optimizer not in DUAL_OPTIMIZERS:
            raise ValueError(
                f"constraint.dual_optimizer must be one of {DUAL_OPTIMIZERS}, got {dual_optimizer!r}"
            )
        if dual_lr <= 0:
            raise ValueError(f"constraint.dual_lr must be > 0, got {dual_lr}")
        if dual_kp < 0 or dual_ki < 0 or dual_kp == dual_ki == 0:
            raise ValueError(f"constraint.dual_kp and constraint.dual_ki must be >= 0 and not both "
                             f"0, got {dual_kp} and {dual_ki}")
        if not 0.0 <= dual_ema_nu < 1.0:
            raise ValueError(f"constraint.dual_ema_nu must be in [0, 1), got {dual_ema_nu}")
        if penalty < 0:
            raise ValueError(f"constraint.penalty must be >= 0, got {penalty}")
        self.num_constraints = num_constraints
        self.dual_lr = float(dual_lr)
        self.dual_optimizer_name = dual_optimizer
        self.dual_adam_eps = float(dual_adam_eps)
        self.dual_adam_betas = tuple(float(b) for b in dual_adam_betas)
        self.dual_kp, self.dual_ki = float(dual_kp), float(dual_ki)
        self.dual_ema_nu = float(dual_ema_nu)
        self.penalty = float(penalty)
        # λ: a leaf tensor outside the autograd graph, updated only by the dual optimizer.
        self.dual = nn.Parameter(torch.zeros(num_constraints), requires_grad=False)

    # -- the Lagrangian ------------------------------------------------------------------
    def slack(self, gamma: torch.Tensor) -> torch.Tensor:
        """Constraint value s (≤ 0 or = 0 when satisfied); the dual ascent direction."""
        raise NotImplementedError

    def cost(self) -> torch.Tensor | float:
        """Extra primal objective besides J_0 (the resilient (ρ/2)‖u‖²)."""
        return 0.0

    def lagrangian(
        self, task_loss: torch.Tensor, gamma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L = J_0 + cost + Σ_i λ_i s_i (+ (c/2)·Σ_i s_i² with a penalty c) with λ held constant;
        also returns s^(t), detached and copied: for the equality and one-sided constraints s *is*
        γ, and a detached view of a leaf γ would show the post-step value to the dual step."""
        if gamma.shape != self.dual.shape:
            raise ValueError(
                f"got {gamma.numel()} γ values for {self.num_constraints} constraints; "
                "was the constraint built for another model?"
            )
        slack = self.slack(gamma)
        dual = self.dual.detach().to(slack.dtype)
        lagrangian = task_loss + self.cost() + torch.dot(dual, slack)
        if self.penalty:
            lagrangian = lagrangian + 0.5 * self.penalty * slack.pow(2).sum()
        return lagrangian, slack.detach().clone()

    # -- primal side ---------------------------------------------------------------------
    def primal_parameters(self) -> list[nn.Parameter]:
        """Variables of the constraint that the *primal* optimizer updates (the slacks u)."""
        return []

    @torch.no_grad()
    def project_primal(self) -> None:
        """Projection after the primal step (u ≥ 0 for the resilient formulation)."""

    # -- dual side -----------------------------------------------------------------------
    def make_dual_optimizer(self) -> torch.optim.Optimizer:
        if self.dual_optimizer_name == "sgd":
            return torch.optim.SGD([self.dual], lr=self.dual_lr)
        if self.dual_optimizer_name == "nupi":
            # λ's precision; 0-dim CPU tensors on purpose: they combine with λ on any device,
            # cooper's step branches on them (`.ne(0).any()`) without a device read-back, and a
            # checkpoint holding them resumes on a CPU or a GPU alike
            kp, ki = torch.tensor([self.dual_kp, self.dual_ki], dtype=self.dual.dtype)
            return nuPI([self.dual], lr=self.dual_lr, Kp=kp, Ki=ki, ema_nu=self.dual_ema_nu,
                        init_type=nuPIInitType.ZEROS)
        return torch.optim.Adam(
            [self.dual], lr=self.dual_lr, eps=self.dual_adam_eps, betas=self.dual_adam_betas
        )

    @torch.no_grad()
    def dual_step(self, optimizer: torch.optim.Optimizer, slack: torch.Tensor) -> None:
        """Gradient ascent on λ along the slack s measured at the start of the step.

        The optimizer minimises, so the gradient is set to −s: plain SGD gives λ + η_d·s exactly.
        """
        self.dual.grad = -slack.detach().to(self.dual.dtype)
        optimizer.step()
        self.dual.grad = None
        if self.nonnegative_dual:
            self.dual.clamp_(min=0.0)

    # -- logging -------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Per-constraint tensors to log: ``{"lambda": λ, "u": u (resilient)}``."""
        return {"lambda": self.dual.detach()}

    def extra_repr(self) -> str:
        extra = (f", kp={self.dual_kp}, ki={self.dual_ki}, ema_nu={self.dual_ema_nu}"
                 if self.dual_optimizer_name == "nupi" else "")
        return (
            f"num_constraints={self.num_constraints}, dual_lr={self.dual_lr}, "
            f"dual_optimizer={self.dual_optimizer_name!r}{extra}, penalty={self.penalty}"
        )


class EqualityConstraint(HomotopyConstraint):
    """(P_I): γ_i = 0 for all i. Alg. 1: λ_i ← λ_i + η_d γ_i^(t), never projected."""

    def slack(self, gamma: torch.Tensor) -> torch.Tensor:
        return gamma


class ResilientConstraint(HomotopyConstraint):
    """(P_II): |γ_i| ≤ u_i, u ≥ 0, cost (ρ/2)‖u‖² — Alg. 2 as corrected in ``ace_algorithm.md`` §3.

    γ-gradient ∂J_0/∂γ_i + λ_i·sign(γ_i); u-gradient ρ u_i − λ_i (descent, then u ≥ 0);
    λ_i ← [λ_i + η_d(|γ_i| − u_i)]_+. At a solution u_i* = λ_i*/ρ.
    """

    nonnegative_dual = True

    def __init__(self, num_constraints: int, dual_lr: float, rho: float = 1.0, **kwargs) -> None:
        super().__init__(num_constraints, dual_lr, **kwargs)
        if rho <= 0:
            raise ValueError(f"constraint.rho must be > 0, got {rho}")
        self.rho = float(rho)
        self.slack_u = nn.Parameter(torch.zeros(num_constraints))  # u^(0) = 0

    def slack(self, gamma: torch.Tensor) -> torch.Tensor:
        return gamma.abs() - self.slack_u.to(gamma.dtype)

    def cost(self) -> torch.Tensor:
        return 0.5 * self.rho * self.slack_u.pow(2).sum()

    def primal_parameters(self) -> list[nn.Parameter]:
        return [self.slack_u]

    @torch.no_grad()
    def project_primal(self) -> None:
        self.slack_u.clamp_(min=0.0)

    def state(self) -> dict[str, torch.Tensor]:
        return {"lambda": self.dual.detach(), "u": self.slack_u.detach()}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rho={self.rho}"


class OneSidedConstraint(HomotopyConstraint):
    """Official-code EGNO "resilient" mode (γ_i ≤ 0; s = γ; λ ≥ 0; no slack variable).

    This is **not** Alg. 2. It reproduces what andreimano/ACE runs with ``--resilience 1
    --epsilon 0`` (``ace_algorithm.md`` §5), only to compare with Table 1's ACE‡ rows.
    """

    nonnegative_dual = True

    def slack(self, gamma: torch.Tensor) -> torch.Tensor:
        return gamma
