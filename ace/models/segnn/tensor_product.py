"""SEGNN's O(3) tensor-product layers, computed as a few dense matmuls (``experiments.md`` §1.2).

Mathematically this is SEGNN's ``O3TensorProduct``: an e3nn ``FullyConnectedTensorProduct``
(``irrep_normalization='component'``, ``path_normalization='element'``, shared weights) whose output
slice ``o`` is multiplied by ``sqrt(fan_in_o)`` (``fan_in_o = Σ_paths→o mul1·mul2``) and whose
``0e`` outputs get a bias; weights and biases are initialised ``U(±1/sqrt(fan_in_o))``. The flat
``weight`` has exactly e3nn's layout (instructions in e3nn order, each block ``[mul1, mul2, mul_o]``),
so ``e3nn_tp.weight.copy_(layer.weight)`` reproduces the layer (tests check this to 1e-12 in
float64), and the initialisation consumes the global RNG exactly as SEGNN does.

For a path ``(l1, l2) → lo`` with weights ``W[u, v, w]`` and unit-norm Wigner-3j symbol ``C``::

    out[z, w, k] += c_path · Σ_{u,v,i,j} W[u,v,w] x1[z,u,i] x2[z,v,j] C[i,j,k]
    c_path = sqrt((2lo+1)/fan_in) · sqrt(fan_in) = sqrt(2lo+1)          (tp_rescale=True)

Instead of e3nn's one einsum per path, every path into output slot ``o`` is first *coupled* with
``x2`` (cheap elementwise work: ``x1·s``, ``a ⊗ v``, ``b · v``, or a small CG contraction), the
coupled features of all those paths are concatenated to ``[Z, 2lo+1, K]`` and multiplied by the
stacked weights ``[K, mul_o]`` in a single matmul (``addmm`` with the bias for scalars). This has
the same math and far fewer kernels than the e3nn code path.

``x1`` may be passed as a tuple of tensors whose concatenation is the input (e.g. ``(x_i, x_j,
extra)`` for messages); this avoids materialising the concatenation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import nn

from ace.models.segnn.irreps import fully_connected_instructions

__all__ = ["O3TensorProduct", "O3TensorProductSwishGate", "gate_constants"]


@lru_cache(maxsize=None)
def gate_constants() -> tuple[float, float]:
    """e3nn's second-moment normalisation constants of SiLU and sigmoid (``normalize2mom``)."""
    return float(normalize2mom(nn.SiLU()).cst), float(normalize2mom(torch.sigmoid).cst)


def _ratio_sqrt(num: float, den: float) -> float:
    return 1.0 if num == den else math.sqrt(num / den)


class O3TensorProduct(nn.Module):
    """``TP(x1, x2)`` of SEGNN (rescaled e3nn FullyConnectedTensorProduct + scalar bias).

    Args:
        irreps_in1: irreps of the first input (the features).
        irreps_out: output irreps.
        irreps_in2: irreps of the second input (the steerable attributes); ``None`` means a
            constant ``1x0e`` input of ones, i.e. an O(3)-equivariant linear layer.
        tp_rescale: SEGNN's ``tp_rescale`` (multiply slice ``o`` by ``sqrt(fan_in_o)``).
        in1_parts: optional list of irreps whose concatenation is ``irreps_in1``; lets ``forward``
            take ``x1`` as a tuple of tensors with those irreps.
        in2_scalar0: promise that the first slot of ``x2`` is ``1x0e`` and always equals this
            constant (e.g. SH_0 = 1/sqrt(4π) of unit vectors, or a node attribute set to 1). Its
            paths then skip the multiplication and fold the constant into the weights — the same
            function whenever the promise holds. Only set it where the inputs are built to obey it.
    """

    def __init__(
        self,
        irreps_in1,
        irreps_out,
        irreps_in2=None,
        tp_rescale: bool = True,
        in1_parts=None,
        in2_scalar0: float | None = None,
    ) -> None:
        super().__init__()
        self.irreps_in1 = o3.Irreps(irreps_in1)
        self.irreps_out = self.irreps_tp_out = o3.Irreps(irreps_out)
        self.has_in2 = irreps_in2 is not None
        self.irreps_in2 = o3.Irreps(irreps_in2) if self.has_in2 else o3.Irreps("1x0e")
        self.tp_rescale = tp_rescale
        self._build(self.irreps_tp_out, in1_parts, in2_scalar0)

    # ------------------------------------------------------------------ construction
    def _build(self, irreps_out: o3.Irreps, in1_parts, in2_scalar0: float | None = None) -> None:
        ir1, ir2 = self.irreps_in1, self.irreps_in2
        instructions = fully_connected_instructions(ir1, ir2, irreps_out)
        fan_in: dict[int, int] = {}
        for i1, i2, io in instructions:
            fan_in[io] = fan_in.get(io, 0) + ir1[i1].mul * ir2[i2].mul
        self.fan_in = fan_in

        # Flat weight offsets, e3nn order.
        offsets, off = [], 0
        for i1, i2, io in instructions:
            offsets.append(off)
            off += ir1[i1].mul * ir2[i2].mul * irreps_out[io].mul
        self.weight_numel = off

        # Slots are obtained with one ``split`` per input part (cheap backward): the sizes of
        # the slots inside each part, and for each in1 slot its global position in that list.
        slot_dims = [mul * ir.dim for mul, ir in ir1]
        self._split1: list[list[int]] = [slot_dims]
        self._split1_whole = [slot_dims]
        self._parts_ok = False
        if in1_parts is not None:
            parts = [o3.Irreps(p) for p in in1_parts]
            assert sum(p.dim for p in parts) == ir1.dim, "in1_parts must concatenate to irreps_in1"
            split, k = [], 0
            for p in parts:
                sizes, acc = [], 0
                while acc < p.dim and k < len(slot_dims):
                    sizes.append(slot_dims[k])
                    acc += slot_dims[k]
                    k += 1
                if acc != p.dim:
                    break  # a slot straddles two parts (simplify() merged them): concatenate
                split.append(sizes)
            else:
                self._split1, self._parts_ok = split, True
        self._split2 = [mul * ir.dim for mul, ir in ir2]
        if in2_scalar0 is not None and (not self.has_in2 or ir2[0] != (1, o3.Irrep("0e"))):
            raise ValueError("in2_scalar0 needs irreps_in2 starting with 1x0e")
        self.in2_scalar0 = in2_scalar0

        # Per output slot: the coupling recipe of each path, the stacked-weight index, the scale.
        self._plan: list[tuple[int, int, list[tuple], int]] = []  # (io, dim_o, paths, K)
        self._bias_loc: dict[int, tuple[int, int]] = {}
        n_bias = 0
        for io, (mul_o, ir_o) in enumerate(irreps_out):
            if ir_o.l == 0 and ir_o.p == 1 and io in fan_in:
                self._bias_loc[io] = (n_bias, n_bias + mul_o)
                n_bias += mul_o
        w3j_names: dict[tuple[int, int, int], str] = {}
        for io, (mul_o, ir_o) in enumerate(irreps_out):
            paths, idx_rows, scale_rows = [], [], []
            for (i1, i2, io_), start in zip(instructions, offsets):
                if io_ != io:
                    continue
                (mul1, irr1), (mul2, irr2) = ir1[i1], ir2[i2]
                l1, l2, lo = irr1.l, irr2.l, ir_o.l
                base = 1.0 if self.tp_rescale else 1.0 / math.sqrt(fan_in[io])
                const = in2_scalar0 is not None and i2 == 0
                if mul2 != 1:
                    kind, k = "general_mul", math.sqrt(ir_o.dim)
                elif l1 == 0 and l2 == 0:
                    kind, k = ("000c", in2_scalar0) if const else ("000", 1.0)
                elif l2 == 0:
                    kind, k = ("l0lc", in2_scalar0) if const else ("l0l", 1.0)
                elif l1 == 0:
                    kind, k = "0ll", 1.0
                elif lo == 0:
                    kind, k = "ll0", _ratio_sqrt(1, irr1.dim)
                else:
                    kind, k = "general", math.sqrt(ir_o.dim)
                name = None
                if kind.startswith("general"):
                    key = (l1, l2, lo)
                    if key not in w3j_names:
                        name = f"_w3j_{l1}_{l2}_{lo}"
                        w3j = o3.wigner_3j(l1, l2, lo, dtype=torch.get_default_dtype())
                        # [d2, d1*do] so that (x2 @ W) -> [Z, d1, do]
                        self.register_buffer(
                            name, w3j.permute(1, 0, 2).reshape(irr2.dim, irr1.dim * ir_o.dim).clone()
                        )
                        w3j_names[key] = name
                    name = w3j_names[key]
                paths.append((kind, i1, i2, mul1, mul2, irr1.dim, irr2.dim, ir_o.dim, name))
                n = mul1 * mul2 * mul_o
                idx_rows.append(torch.arange(start, start + n).view(mul1 * mul2, mul_o))
                scale_rows.append(torch.full((mul1 * mul2, 1), k * base, dtype=torch.float64))
            if not paths:
                self._plan.append((io, ir_o.dim, [], 0))
                continue
            idx = torch.cat(idx_rows, 0)
            scale = torch.cat(scale_rows, 0)
            self.register_buffer(f"_widx_{io}", idx.reshape(-1).clone(), persistent=False)
            if bool((scale != 1.0).any()):
                self.register_buffer(
                    f"_wscale_{io}", scale.to(torch.get_default_dtype()), persistent=False
                )
            else:
                setattr(self, f"_wscale_{io}", None)
            self._plan.append((io, ir_o.dim, paths, idx.shape[0]))

        if not any(p[0] in ("0ll", "ll0", "general", "general_mul", "000", "l0l")
                   for _, _, paths, _ in self._plan for p in paths) and self.has_in2:
            self._needs_x2 = False  # every path uses the constant slot only
        else:
            self._needs_x2 = self.has_in2
        self.weight = nn.Parameter(torch.empty(self.weight_numel))
        self.bias = nn.Parameter(torch.empty(n_bias)) if n_bias else None
        self._instructions, self._offsets = instructions, offsets
        self._irreps_tp_out = irreps_out
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """SEGNN's init, consuming the global RNG in the same order as the original module.

        e3nn draws ``randn(weight_numel)``; SEGNN then overwrites each instruction's block with
        ``U(±1/sqrt(fan_in_o))`` in instruction order, then each ``0e`` bias with the same bound.
        """
        irreps_out = self._irreps_tp_out
        w = torch.randn(self.weight_numel, dtype=self.weight.dtype)
        for (i1, i2, io), start in zip(self._instructions, self._offsets):
            n = self.irreps_in1[i1].mul * self.irreps_in2[i2].mul * irreps_out[io].mul
            bound = 1.0 / math.sqrt(self.fan_in[io])
            w[start : start + n].uniform_(-bound, bound)
        self.weight.copy_(w)
        if self.bias is not None:
            for io, (a, b) in self._bias_loc.items():
                bound = 1.0 / math.sqrt(self.fan_in[io])
                self.bias[a:b].uniform_(-bound, bound)

    # ------------------------------------------------------------------ forward
    def _couple(self, path, x1s: list[torch.Tensor], x2s, Z: int) -> torch.Tensor:
        """Coupled features of one path, layout [Z, 2lo+1, mul1*mul2] (without the weights)."""
        kind, i1, i2, mul1, mul2, d1, d2, do, w3j_name = path
        x = x1s[i1]
        if kind == "000c":
            return x.unsqueeze(1)
        if kind == "l0lc":
            return x.view(Z, d1, mul1)
        if kind == "000":
            return (x * x2s[i2] if self.has_in2 else x).unsqueeze(1)
        if kind == "l0l":
            c = x.view(Z, d1, mul1)
            return c * x2s[i2].unsqueeze(2) if self.has_in2 else c
        y = x2s[i2]
        if kind == "0ll":
            return y.unsqueeze(2) * x.unsqueeze(1)
        if kind == "ll0":
            return (x.view(Z, d1, mul1) * y.unsqueeze(2)).sum(1, keepdim=True)
        w3j = getattr(self, w3j_name)
        if kind == "general":
            t = (y @ w3j).view(Z, d1, do)  # Σ_j y_j C[i, j, k]
            return torch.bmm(t.transpose(1, 2), x.view(Z, d1, mul1))
        # general_mul: several copies of an attribute irrep (attribute layout [Z, d2, mul2])
        cg = w3j.view(d2, d1, do)
        c = torch.einsum("ziu,zjv,jik->zkuv", x.view(Z, d1, mul1), y.reshape(Z, d2, mul2), cg)
        return c.reshape(Z, do, mul1 * mul2)

    def blocks(self, x1, x2: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per output slot ``[Z, 2l+1, mul]`` (``[Z, mul]`` for scalars), bias included."""
        split = self._split1_whole
        if isinstance(x1, (tuple, list)):
            if self._parts_ok:
                parts, split = tuple(x1), self._split1
            else:
                parts = (torch.cat(tuple(x1), dim=-1),)
        else:
            parts = (x1,)
        x1s: list[torch.Tensor] = []
        for part, sizes in zip(parts, split):
            if len(sizes) == 1:
                x1s.append(part)
            else:
                x1s.extend(part.split(sizes, dim=-1))
        x2s: list[torch.Tensor] = []
        if self._needs_x2:
            assert x2 is not None, "this tensor product needs its second input"
            x2s = list(x2.split(self._split2, dim=-1)) if len(self._split2) > 1 else [x2]
        Z = parts[0].shape[0]
        outs = []
        for io, dim_o, paths, K in self._plan:
            mul_o = self._irreps_tp_out[io].mul
            if not paths:  # no path reaches this slot: e3nn outputs zeros
                shape = (Z, mul_o) if dim_o == 1 else (Z, dim_o, mul_o)
                outs.append(parts[0].new_zeros(shape))
                continue
            coupled = [self._couple(p, x1s, x2s, Z) for p in paths]
            c = coupled[0] if len(coupled) == 1 else torch.cat(coupled, dim=-1)
            w = self.weight.index_select(0, getattr(self, f"_widx_{io}")).view(K, mul_o)
            scale = getattr(self, f"_wscale_{io}")
            if scale is not None:
                w = w * scale
            if dim_o == 1:
                c = c.reshape(Z, K)
                if io in self._bias_loc:
                    a, b = self._bias_loc[io]
                    outs.append(torch.addmm(self.bias[a:b], c, w))
                else:
                    outs.append(c @ w)
            else:
                outs.append((c.reshape(Z * dim_o, K) @ w).view(Z, dim_o, mul_o))
        return outs

    @staticmethod
    def assemble(blocks: list[torch.Tensor]) -> torch.Tensor:
        """Channels-last layout ``[Z, Σ (2l+1)·mul]`` from :meth:`blocks`."""
        flat = [b.reshape(b.shape[0], -1) for b in blocks]
        return flat[0] if len(flat) == 1 else torch.cat(flat, dim=-1)

    def forward(self, x1, x2: torch.Tensor | None = None) -> torch.Tensor:
        return self.assemble(self.blocks(x1, x2))

    def extra_repr(self) -> str:
        in2 = str(self.irreps_in2) if self.has_in2 else "1"
        return (
            f"{self.irreps_in1} x {in2} -> {self.irreps_out} | {self.weight_numel} weights"
            f" + {0 if self.bias is None else self.bias.numel()} biases (channels-last layout)"
        )


class O3TensorProductSwishGate(O3TensorProduct):
    """SEGNN's ``O3TensorProductSwishGate``: TP to ``scalars + gates + gated``, then an e3nn Gate.

    The first slot of ``irreps_out`` is taken as the scalars (SiLU), every other slot is gated by
    one extra ``0e`` channel per irrep (sigmoid). As in e3nn's ``Gate``, both activations are
    normalised to unit second moment (``normalize2mom``). When ``irreps_out`` has only the scalar
    slot, the activation is a plain (unnormalised) SiLU, as in SEGNN.
    """

    def __init__(self, irreps_in1, irreps_out, irreps_in2=None, in1_parts=None,
                 in2_scalar0: float | None = None) -> None:
        nn.Module.__init__(self)
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([irreps_out[0]])
        gated = o3.Irreps(list(irreps_out[1:]))
        if scalars[0].ir != o3.Irrep("0e") or any(ir.l == 0 for _, ir in gated):
            raise ValueError(f"gated irreps must be '<n>x0e + <non-scalars>', got {irreps_out}")
        n_gates = gated.num_irreps
        irreps_g = (scalars + o3.Irreps(f"{n_gates}x0e") + gated).simplify() if n_gates else scalars
        self.irreps_in1 = o3.Irreps(irreps_in1)
        self.has_in2 = irreps_in2 is not None
        self.irreps_in2 = o3.Irreps(irreps_in2) if self.has_in2 else o3.Irreps("1x0e")
        self.tp_rescale = True
        self.irreps_out = irreps_out
        self.irreps_tp_out = irreps_g
        self.n_scalars = scalars.num_irreps
        self.gated_muls = [mul for mul, _ in irreps_g[1:]]
        self.silu_cst, self.sigmoid_cst = gate_constants()
        self._build(irreps_g, in1_parts, in2_scalar0)

    def forward(self, x1, x2: torch.Tensor | None = None) -> torch.Tensor:
        blocks = self.blocks(x1, x2)
        if not self.gated_muls:
            return torch.nn.functional.silu(self.assemble(blocks))
        s = blocks[0]
        n = self.n_scalars
        out = [torch.nn.functional.silu(s[:, :n]) * self.silu_cst]
        gates = torch.sigmoid(s[:, n:]) * self.sigmoid_cst
        g0 = 0
        for blk, mul in zip(blocks[1:], self.gated_muls):
            gated = blk * gates[:, g0 : g0 + mul].unsqueeze(1)  # [Z, 2l+1, mul]
            out.append(gated.reshape(blk.shape[0], -1))
            g0 += mul
        return torch.cat(out, dim=-1)
