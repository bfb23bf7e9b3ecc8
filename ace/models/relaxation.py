"""Scheduled relaxation with a Lie-derivative penalty: the "SEGNN Rel." baseline.

Pertigkiozoglou et al., NeurIPS 2024, as specified in ``experiments.md`` §6.3. A relaxed map adds
a dense, bias-free linear map W to an equivariant sub-layer::

    y = f_eq(x) + γ · W x        in training (γ: one global scalar, set per epoch, never learned)
    y = f_eq(x)                  in evaluation (γ = 0: W is not evaluated)

and training adds the penalty (:class:`LieDerivativePenalty`)::

    R = c · ( √(Σ_W LD_W) + √(Σ_W N_W) ),
    LD_W = Σ_{g=1..3} Σ_nodes ‖W A_g^in x − A_g^out W x‖²,     N_W = Σ_nodes ‖W x‖²,

with x detached and A_g^in, A_g^out the so(3) generators on W's own input and output irreps
(block diagonal, ``o3.so3_generators(l)`` per irrep copy, zero for l = 0). W A_g^in − A_g^out W is
the Lie derivative d/dt exp(−t A_g^out) W exp(t A_g^in) at t = 0, so LD_W = 0 exactly when W
commutes with rotations. The tensors are kept generator-major, ``[3, D_out, D_in]``: the reference
code's reshape mixes generators with components (``experiments.md`` §6.3, "Correct layout").

This is a baseline, not ACE: γ is not a homotopy parameter, there are no dual variables, and
:mod:`ace.core` is not involved. The schedule of γ is :class:`ace.training.relaxation.RelaxationSchedule`.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ace.core.homotopic import PrunedBranch
from ace.core.homotopic import prune as prune_homotopic

__all__ = [
    "so3_generators",
    "RelaxedLinear",
    "LieDerivativePenalty",
    "relaxed_maps",
    "set_relaxation_gamma",
    "prune_all",
    "triangle_schedule",
]


def so3_generators(irreps, index: torch.Tensor | None = None) -> torch.Tensor:
    """The three so(3) generators acting on a vector of ``irreps``: ``[3, D, D]``.

    In e3nn layout (multiplicity-major) this is ``block_diag`` of ``o3.so3_generators(l)`` over
    every irrep copy, so that ``irreps.D_from_angles(α, β, γ) = exp(α A_1) exp(β A_0) exp(γ A_1)``.
    ``index`` describes another layout of the same vector, ``x_layout = x_e3nn[index]``; the
    generators are then ``A[:, index][:, :, index]``.
    """
    blocks = [o3.so3_generators(ir.l) for mul, ir in o3.Irreps(irreps) for _ in range(mul)]
    dim = sum(b.shape[-1] for b in blocks)
    gens = torch.zeros(3, dim, dim, dtype=torch.get_default_dtype())
    offset = 0
    for b in blocks:
        d = b.shape[-1]
        gens[:, offset:offset + d, offset:offset + d] = b
        offset += d
    if index is not None:
        gens = gens[:, index][:, :, index]
    return gens


class RelaxedLinear(nn.Module):
    """``eq_out + γ · W x`` in training, ``eq_out`` in evaluation (``W`` bias-free, ``[D_out, D_in]``).

    Args:
        irreps_in, irreps_out: the irreps of x and of the output (they fix the generators).
        in_index, out_index: the layout of x and of the output, ``x_layout = x_e3nn[index]``
            (``None``: e3nn layout). W acts on vectors in that layout directly. Its initial
            distribution is i.i.d. and Adam is elementwise, so a fixed permutation of W's rows and
            columns gives the same training as an e3nn-layout W.
        init_std: W ~ N(0, init_std²) (reference: 1e-4).
        gamma: the initial γ (reference without schedule: 0.1); the schedule overwrites it.

    During training the detached input of the latest forward is kept for the penalty.
    """

    def __init__(self, irreps_in, irreps_out, in_index: torch.Tensor | None = None,
                 out_index: torch.Tensor | None = None, init_std: float = 1e-4,
                 gamma: float = 0.1) -> None:
        super().__init__()
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.weight = nn.Parameter(torch.randn(irreps_out.dim, irreps_in.dim) * init_std)
        self.register_buffer("gen_in", so3_generators(irreps_in, in_index), persistent=False)
        self.register_buffer("gen_out", so3_generators(irreps_out, out_index), persistent=False)
        # γ is set by the schedule at every epoch start: not state of the checkpoint
        self.register_buffer("gamma", torch.tensor(float(gamma)), persistent=False)
        self.last_input: torch.Tensor | None = None

    @property
    def relaxed(self) -> bool:
        """The map is evaluated in training only (γ = 0 at every evaluation)."""
        return self.training

    def forward(self, eq_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return eq_out
        self.last_input = x.detach()
        return eq_out + self.gamma * nn.functional.linear(x, self.weight)

    def lie_derivative(self) -> torch.Tensor:
        """``W A_g^in − A_g^out W`` for g = 1, 2, 3: ``[3, D_out, D_in]``."""
        w = self.weight
        return torch.matmul(w, self.gen_in) - torch.matmul(self.gen_out, w)

    def penalty_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(LD_W, N_W)`` on the rows of ``x`` (detached here)."""
        x = x.detach()
        ld = torch.matmul(x, self.lie_derivative().transpose(1, 2)).pow(2).sum()
        norm = nn.functional.linear(x, self.weight).pow(2).sum()
        return ld, norm

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, bias=False"


def relaxed_maps(model: nn.Module) -> list[RelaxedLinear]:
    return [m for m in model.modules() if isinstance(m, RelaxedLinear)]


def set_relaxation_gamma(model: nn.Module, gamma: float) -> int:
    """Set γ of every relaxed map of ``model``; returns how many there are."""
    maps = relaxed_maps(model)
    for m in maps:
        m.gamma.fill_(float(gamma))
    return len(maps)


class LieDerivativePenalty:
    """``weight · (√(Σ_W LD_W) + √(Σ_W N_W))`` over every relaxed map of a network, on the inputs
    of its latest training forward (module docstring). A regulariser for ``ACEModule``."""

    def __init__(self, weight: float = 0.01) -> None:
        if weight < 0:
            raise ValueError(f"model.regularizer.weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def __call__(self, net: nn.Module) -> torch.Tensor:
        maps = relaxed_maps(net)
        if not maps:
            raise ValueError(
                "LieDerivativePenalty needs a network with relaxed maps (RelaxedLinear), e.g. "
                "model.net.relaxation=true; set model.regularizer=null otherwise"
            )
        missing = [m for m in maps if m.last_input is None]
        if missing:
            raise RuntimeError(
                f"{len(missing)} of {len(maps)} relaxed maps have no input: call the penalty "
                "after a forward pass in training mode"
            )
        ld = norm = None
        for m in maps:
            a, b = m.penalty_terms(m.last_input)
            ld = a if ld is None else ld + a
            norm = b if norm is None else norm + b
            m.last_input = None  # one penalty per forward
        return self.weight * (ld.sqrt() + norm.sqrt())

    def __repr__(self) -> str:
        return f"LieDerivativePenalty(weight={self.weight})"


def prune_all(model: nn.Module) -> nn.Module:
    """A deep copy without f_neq: every homotopic branch (:func:`ace.core.homotopic.prune`) and
    every relaxed map removed. Its outputs equal the evaluation outputs of ``model``."""
    pruned = prune_homotopic(model)  # a deep copy
    for module in list(pruned.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, RelaxedLinear):
                setattr(module, name, PrunedBranch())
    return pruned


def triangle_schedule(epoch: int, max_epochs: int) -> float:
    """γ of epoch ``e`` (0-indexed) of ``E``: 2e/E up to E/2, then 1 − 2(e − E/2)/E.

    0 at the first epoch, 1 at mid-training, 2/E at the last epoch (``experiments.md`` §6.3).
    """
    if max_epochs < 1:
        raise ValueError(f"the triangle schedule needs max_epochs >= 1, got {max_epochs}")
    e, E = float(epoch), float(max_epochs)
    return 2 * e / E if e <= E / 2 else 1 - 2 * (e - E / 2) / E
