"""Irreps helpers for SEGNN (``experiments.md`` §1.2).

The hidden irreps of SEGNN are *weight balanced*: the smallest ``n`` such that a tensor product
``n·SH(≤lmax_h) ⊗ attr → n·SH(≤lmax_h)`` has at least as many weights as a plain linear layer on
the requested number of scalar features. For N-body (64 scalars, SH l ≤ 1 attributes) there are
4 paths, 4n² ≥ 64², so n = 32 and the hidden irreps are ``32x0e+32x1o`` (d = 128).

Weight counts are computed combinatorially (no e3nn tensor product has to be built, which costs
~0.1 s of code generation each); they equal ``e3nn.o3.FullyConnectedTensorProduct.weight_numel``.
"""

from __future__ import annotations

from e3nn.o3 import Irreps

__all__ = [
    "fully_connected_instructions",
    "fc_weight_numel",
    "weight_balanced_irreps",
    "balanced_irreps",
]


def fully_connected_instructions(
    irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps
) -> list[tuple[int, int, int]]:
    """``(i_in1, i_in2, i_out)`` in the order of e3nn's ``FullyConnectedTensorProduct``."""
    return [
        (i1, i2, io)
        for i1, (_, ir1) in enumerate(irreps_in1)
        for i2, (_, ir2) in enumerate(irreps_in2)
        for io, (_, ir_out) in enumerate(irreps_out)
        if ir_out in ir1 * ir2
    ]


def fc_weight_numel(irreps_in1, irreps_in2, irreps_out) -> int:
    """Number of weights of a fully connected ('uvw') tensor product."""
    irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    return sum(
        irreps_in1[i1].mul * irreps_in2[i2].mul * irreps_out[io].mul
        for i1, i2, io in fully_connected_instructions(irreps_in1, irreps_in2, irreps_out)
    )


def _sh_type_irreps(lmax: int, n: int) -> Irreps:
    # (Irreps.spherical_harmonics(lmax) * n).sort().irreps.simplify() == n x each SH irrep
    return (Irreps.spherical_harmonics(lmax) * n).sort().irreps.simplify()


def balanced_irreps(lmax: int, vec_dim: int, sh_type: bool = True) -> Irreps:
    """SEGNN's ``BalancedIrreps``: about equal dimension per order l, total dimension ``vec_dim``."""
    specs = ["0e"]
    for l in range(1, lmax + 1):
        specs += [f"{l}{'e' if l % 2 == 0 else 'o'}"] if sh_type else [f"{l}e", f"{l}o"]
    dims = [2 * int(s[0]) + 1 for s in specs]
    copies = [int(vec_dim * (1 / d) / len(dims)) for d in dims]
    copies[0] += vec_dim - sum(c * d for c, d in zip(copies, dims))
    return Irreps("+".join(f"{c}x{s}" for c, s in zip(copies, specs)))


def weight_balanced_irreps(
    irreps_in1_scalar, irreps_in2, sh: bool = True, lmax: int | None = None
) -> Irreps:
    """SEGNN's ``WeightBalancedIrreps`` (smallest n with at least the scalar layer's weight count)."""
    irreps_in1_scalar, irreps_in2 = Irreps(irreps_in1_scalar), Irreps(irreps_in2)
    lmax = irreps_in2.lmax if lmax is None else lmax

    def make(n: int) -> Irreps:
        return _sh_type_irreps(lmax, n) if sh else balanced_irreps(lmax, n)

    target = fc_weight_numel(irreps_in1_scalar, "1x0e", irreps_in1_scalar)
    n = 1
    irreps = make(n)
    while fc_weight_numel(irreps, irreps_in2, irreps) < target:
        n += 1
        irreps = make(n)
    return Irreps(irreps)
