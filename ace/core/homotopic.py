"""Homotopic layers f^i = f^{eq,i} + γ_i · f^{neq,i} (paper Eq. 3, ``ace_algorithm.md`` §1).

A model becomes an ACE model by routing the output of an equivariant sub-layer through a
:class:`HomotopicBranch`, which adds ``γ · f_neq(...)`` in *relaxed* mode and skips the branch
entirely in *equivariant* mode (so the model is exactly the projection f_{θ,0}). Models never see
dual variables; the constraint machinery (:mod:`ace.core.constraints`) only reads the γ's.

Typical use inside a layer::

    self.update_branch = HomotopicBranch(MLP(...))       # γ initialised to 1
    ...
    v = self.update_branch(tp_out, u)                    # tp_out + γ · MLP(u)

or, to wrap a whole equivariant layer that takes the same input::

    layer = Homotopic(EquivariantLinear(...), nn.Linear(...))
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "HomotopicBranch",
    "Homotopic",
    "PrunedBranch",
    "homotopic_branches",
    "gammas",
    "num_gammas",
    "set_relaxed",
    "equivariant_mode",
    "relaxed_mode",
    "prune",
    "count_parameters",
]


class HomotopicBranch(nn.Module):
    """``eq_out + γ · f_neq(*neq_inputs)``, one learnable scalar γ (init ``gamma_init``, paper: 1).

    In equivariant mode (``relaxed = False``) the branch is not evaluated at all: BatchNorm
    layers inside ``f_neq`` neither run nor update their statistics (``ace_algorithm.md`` §1).
    γ is never clamped or reparametrised.
    """

    def __init__(self, f_neq: nn.Module, gamma_init: float = 1.0) -> None:
        super().__init__()
        self.f_neq = f_neq
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))
        self.relaxed = True

    def forward(self, eq_out: torch.Tensor, *neq_inputs: torch.Tensor) -> torch.Tensor:
        if not self.relaxed:
            return eq_out
        return eq_out + self.gamma * self.f_neq(*neq_inputs)

    def forward_stream(
        self, eq_out: torch.Tensor, *neq_inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(eq_out + γ · f_neq(x), f_neq(x))``, for branches chained into a stream.

        Models whose f_neq is a separate stream carried from layer to layer (SchNet's positional
        stream, ``experiments.md`` §3.2) feed each branch's f_neq output to the next branch. In
        equivariant mode nothing is evaluated and the stream is ``None``.
        """
        if not self.relaxed:
            return eq_out, None
        neq = self.f_neq(*neq_inputs)
        return eq_out + self.gamma * neq, neq

    def extra_repr(self) -> str:
        return f"relaxed={self.relaxed}"


class PrunedBranch(nn.Module):
    """What :func:`prune` puts in place of a :class:`HomotopicBranch`: returns ``eq_out``."""

    def forward(self, eq_out: torch.Tensor, *neq_inputs: torch.Tensor) -> torch.Tensor:
        return eq_out

    def forward_stream(
        self, eq_out: torch.Tensor, *neq_inputs: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        return eq_out, None


class Homotopic(nn.Module):
    """Wrap an equivariant layer: ``f(x) = f_eq(x) + γ · f_neq(x)`` for the same inputs."""

    def __init__(self, f_eq: nn.Module, f_neq: nn.Module, gamma_init: float = 1.0) -> None:
        super().__init__()
        self.f_eq = f_eq
        self.branch = HomotopicBranch(f_neq, gamma_init)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.branch(self.f_eq(*inputs), *inputs)


def homotopic_branches(model: nn.Module) -> list[HomotopicBranch]:
    """All branches of ``model`` in module-registration order (this order indexes γ_i, λ_i, u_i)."""
    return [m for m in model.modules() if isinstance(m, HomotopicBranch)]


def gammas(model: nn.Module) -> torch.Tensor:
    """The homotopy parameters γ ∈ R^L as one tensor, differentiable w.r.t. each γ_i."""
    branches = homotopic_branches(model)
    if not branches:
        raise ValueError("model has no HomotopicBranch: nothing to constrain")
    return torch.stack([b.gamma for b in branches])


def num_gammas(model: nn.Module) -> int:
    return len(homotopic_branches(model))


def set_relaxed(model: nn.Module, relaxed: bool) -> None:
    """Relaxed mode computes f_eq + γ f_neq; equivariant mode computes f_eq = f_{θ,0}."""
    for branch in homotopic_branches(model):
        branch.relaxed = relaxed


@contextmanager
def _mode(model: nn.Module, relaxed: bool):
    branches = homotopic_branches(model)
    previous = [b.relaxed for b in branches]
    for b in branches:
        b.relaxed = relaxed
    try:
        yield model
    finally:
        for b, p in zip(branches, previous):
            b.relaxed = p


def equivariant_mode(model: nn.Module):
    """Context manager: evaluate the projection f_eq (γ := 0, branches skipped)."""
    return _mode(model, relaxed=False)


def relaxed_mode(model: nn.Module):
    """Context manager: evaluate f_eq + γ · f_neq with the learned γ."""
    return _mode(model, relaxed=True)


def prune(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every f_neq and γ removed: the pure f_eq model for export.

    Its outputs equal the equivariant-mode outputs of ``model`` and its parameter count equals the
    vanilla architecture's (paper §6, "at inference f_neq can be dropped").
    """
    pruned = copy.deepcopy(model)
    for module in list(pruned.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, HomotopicBranch):
                setattr(module, child_name, PrunedBranch())
    return pruned


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
