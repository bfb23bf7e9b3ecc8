"""SEGNN's O(3) tensor-product layers, computed as a few dense matmuls (``experiments.md`` §1.2).

Mathematically this is SEGNN's ``O3TensorProduct``: an e3nn ``FullyConnectedTensorProduct``
(``irrep_normalization='component'``, ``path_normalization='element'``, shared weights) whose output
slot ``o`` is multiplied by ``sqrt(fan_in_o)`` (``fan_in_o = Σ_paths→o mul1·mul2``) and whose
``0e`` outputs get a bias; weights and biases are initialised ``U(±1/sqrt(fan_in_o))``. The flat
``weight`` has exactly e3nn's layout (instructions in e3nn order, each block ``[mul1, mul2, mul_o]``),
so ``e3nn_tp.weight.copy_(layer.weight)`` reproduces the layer (tests check this to 1e-12 in
float64), and the initialisation consumes the global RNG exactly as SEGNN does.

For a path ``(l1, l2) → lo`` with weights ``W[u, v, w]`` and unit-norm Wigner-3j symbol ``C``::

    out[z, w, k] += c_path · Σ_{u,v,i,j} W[u,v,w] x1[z,u,i] x2[z,v,j] C[i,j,k]
    c_path = sqrt((2lo+1)/fan_in) · sqrt(fan_in) = sqrt(2lo+1)          (tp_rescale=True)

How it is computed (same function, far fewer kernels than e3nn's one einsum per path):

* features are *channels-last* per irrep slot (``[Z, 2l+1, mul]`` blocks, see ``layout.py``);
* paths into an output slot are *coupled* with ``x2`` first (``x1·s``, ``b·v``, or a small CG
  contraction), concatenated to ``[Z, 2lo+1, K]`` and multiplied by the stacked weights
  ``[K, mul_o]`` in one matmul (``addmm`` with the bias for scalars);
* paths ``0e ⊗ y → y`` are done as ``y ⊗ (a @ W)`` (``2lo+1`` times fewer flops);
* all per-path constants (and optional per-slot factors, e.g. the gate's sigmoid normalisation)
  are folded into the gathered weight matrix, which is built with one ``index_select`` per call;
* the first input may arrive as several tensors whose slots are concatenations of slots of the
  logical input (e.g. messages get ``[x_i | x_j]`` per slot), see ``in1_parts``/``in1_layout``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import nn

from ace.models.segnn.irreps import fully_connected_instructions

__all__ = ["O3TensorProduct", "O3TensorProductSwishGate", "gate_constants", "pair_layout"]


@lru_cache(maxsize=None)
def gate_constants() -> tuple[float, float]:
    """e3nn's second-moment normalisation constants of SiLU and sigmoid (``normalize2mom``)."""
    return float(normalize2mom(nn.SiLU()).cst), float(normalize2mom(torch.sigmoid).cst)


def _ratio_sqrt(num: float, den: float) -> float:
    return 1.0 if num == den else math.sqrt(num / den)


def pair_layout(irreps, n_pairs: int = 2, extra_parts: int = 0) -> list:
    """``in1_layout`` for ``n_pairs`` parts of the same ``irreps`` merged slot by slot.

    Tensor 0 holds, for every slot k of ``irreps``, the channels of part 0, then part 1, …
    (what :func:`ace.models.segnn.layout.concat_channels` builds); each of the ``extra_parts``
    following parts is its own tensor.
    """
    irreps = o3.Irreps(irreps)
    layout = [[[(p, k) for p in range(n_pairs)] for k in range(len(irreps))]]
    return layout + [None] * extra_parts  # None: that part as given, slots unmerged


class O3TensorProduct(nn.Module):
    """``TP(x1, x2)`` of SEGNN (rescaled e3nn FullyConnectedTensorProduct + scalar bias).

    Inputs and outputs are channels-last per slot (``layout.py``).

    Args:
        irreps_in1: irreps of the first input (the features), as in the reference module.
        irreps_out: output irreps.
        irreps_in2: irreps of the second input (the steerable attributes); ``None`` means a
            constant ``1x0e`` input of ones, i.e. an O(3)-equivariant linear layer.
        tp_rescale: SEGNN's ``tp_rescale`` (multiply slot ``o`` by ``sqrt(fan_in_o)``).
        in1_parts: list of irreps whose concatenation (channel by channel) is ``irreps_in1``,
            e.g. ``[H, H, extra]`` for ``cat(x_i, x_j, e)``. Default ``[irreps_in1]``.
        in1_layout: how the parts arrive in ``forward``: one entry per input tensor, either
            ``None`` (the next unused part, as is) or a list of slots, each a list of
            ``(part, slot_of_part)`` whose channels are concatenated in that slot. Default: every
            part is its own tensor. With a single input tensor ``x1`` may be passed bare.
        in2_scalar0: promise that the first slot of ``x2`` is ``1x0e`` and always equals this
            constant (SH_0 = 1/sqrt(4π) of unit vectors, or a node attribute set to 1). Its paths
            skip the multiplication and fold the constant into the weights — the same function
            whenever the promise holds. Only set it where the inputs are built to obey it.
    """

    def __init__(
        self,
        irreps_in1,
        irreps_out,
        irreps_in2=None,
        tp_rescale: bool = True,
        in1_parts=None,
        in1_layout=None,
        in2_scalar0: float | None = None,
    ) -> None:
        super().__init__()
        self._setup(irreps_in1, irreps_out, irreps_in2, tp_rescale)
        self._build(self.irreps_tp_out, in1_parts, in1_layout, in2_scalar0, {})

    def _setup(self, irreps_in1, irreps_out, irreps_in2, tp_rescale: bool) -> None:
        self.irreps_in1 = o3.Irreps(irreps_in1)
        self.irreps_out = self.irreps_tp_out = o3.Irreps(irreps_out)
        self.has_in2 = irreps_in2 is not None
        self.irreps_in2 = o3.Irreps(irreps_in2) if self.has_in2 else o3.Irreps("1x0e")
        self.tp_rescale = tp_rescale

    # ------------------------------------------------------------------ construction
    def _input_slots(self, in1_parts, in1_layout) -> list[list[tuple[o3.Irrep, list[tuple[int, int]]]]]:
        """Per input tensor, its slots as ``(irrep, [(slot of irreps_in1, channel u), …])``."""
        ir1 = self.irreps_in1
        parts = [ir1] if in1_parts is None else [o3.Irreps(p) for p in in1_parts]
        # logical channel g -> (slot s of irreps_in1, channel u), matched by position
        channels = [(s, u, ir) for s, (mul, ir) in enumerate(ir1) for u in range(mul)]
        part_slot_channels: dict[tuple[int, int], tuple[o3.Irrep, list[tuple[int, int]]]] = {}
        g = 0
        for p, irreps in enumerate(parts):
            for k, (mul, ir) in enumerate(irreps):
                chans = channels[g : g + mul]
                if len(chans) != mul or any(c[2] != ir for c in chans):
                    raise ValueError(f"in1_parts {parts} do not concatenate to {ir1}")
                part_slot_channels[(p, k)] = (ir, [(s, u) for s, u, _ in chans])
                g += mul
        if g != len(channels):
            raise ValueError(f"in1_parts {parts} do not concatenate to {ir1}")

        layout = in1_layout if in1_layout is not None else [None] * len(parts)
        tensors, used, next_part = [], set(), 0
        for entry in layout:
            if entry is None:
                while any((next_part, k) in used for k in range(len(parts[next_part]))):
                    next_part += 1
                entry = [[(next_part, k)] for k in range(len(parts[next_part]))]
                next_part += 1
            slots = []
            for members in entry:
                irs = {part_slot_channels[m][0] for m in members}
                if len(irs) != 1:
                    raise ValueError(f"merged slot {members} mixes irreps {irs}")
                chans = [c for m in members for c in part_slot_channels[m][1]]
                used.update(members)
                slots.append((irs.pop(), chans))
            tensors.append(slots)
        if used != set(part_slot_channels):
            raise ValueError("in1_layout must use every slot of every part exactly once")
        return tensors

    def _build(self, irreps_out: o3.Irreps, in1_parts, in1_layout,
               in2_scalar0: float | None, slot_factor: dict[int, float]) -> None:
        ir1, ir2 = self.irreps_in1, self.irreps_in2
        instructions = fully_connected_instructions(ir1, ir2, irreps_out)
        fan_in: dict[int, int] = {}
        for i1, i2, io in instructions:
            fan_in[io] = fan_in.get(io, 0) + ir1[i1].mul * ir2[i2].mul
        self.fan_in = fan_in
        offsets, off = {}, 0
        for i1, i2, io in instructions:
            offsets[(i1, i2, io)] = off
            off += ir1[i1].mul * ir2[i2].mul * irreps_out[io].mul
        self.weight_numel = off

        tensors = self._input_slots(in1_parts, in1_layout)
        self._split1 = [[len(ch) * ir.dim for ir, ch in slots] for slots in tensors]
        merged = [slot for slots in tensors for slot in slots]  # flat list, split order
        self._split2 = [mul * ir.dim for mul, ir in ir2]
        first2 = ir2[0] if len(ir2) else None
        if in2_scalar0 is not None and (
            not self.has_in2 or first2.mul != 1 or first2.ir != o3.Irrep("0e")
        ):
            raise ValueError("in2_scalar0 needs irreps_in2 starting with 1x0e")
        self.in2_scalar0 = in2_scalar0

        self._bias_loc: dict[int, tuple[int, int]] = {}
        n_bias = 0
        for io, (mul_o, ir_o) in enumerate(irreps_out):
            if ir_o.l == 0 and ir_o.p == 1 and io in fan_in:
                self._bias_loc[io] = (n_bias, n_bias + mul_o)
                n_bias += mul_o

        # Per output slot, groups of paths sharing one matmul:
        #  "direct": coupled features [Z, 2lo+1, K] of the paths @ W [K, mul_o];
        #  "outer" (one per attribute slot y, paths 0e ⊗ y → y): y ⊗ (a @ W).
        self._plan: list[tuple[int, int, list[tuple]]] = []
        idx_all, scale_all, w3j_names, kinds_used = [], [], {}, set()
        for io, (mul_o, ir_o) in enumerate(irreps_out):
            grouped: dict[tuple[str, int], tuple[list, list, list]] = {}
            for m, (irr1, chans) in enumerate(merged):
                for i2, (mul2, irr2) in enumerate(ir2):
                    if ir_o not in irr1 * irr2:
                        continue
                    l1, l2, lo = irr1.l, irr2.l, ir_o.l
                    base = 1.0 if self.tp_rescale else 1.0 / math.sqrt(fan_in[io])
                    base *= slot_factor.get(io, 1.0)
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
                    kinds_used.add(kind)
                    name = None
                    if kind.startswith("general"):
                        key = (l1, l2, lo)
                        if key not in w3j_names:
                            w3j = o3.wigner_3j(l1, l2, lo, dtype=torch.get_default_dtype())
                            # [d2, d1*do] so that (x2 @ W) -> [Z, d1, do]
                            self.register_buffer(
                                f"_w3j_{l1}_{l2}_{lo}",
                                w3j.permute(1, 0, 2).reshape(irr2.dim, irr1.dim * ir_o.dim).clone(),
                            )
                            w3j_names[key] = f"_w3j_{l1}_{l2}_{lo}"
                        name = w3j_names[key]
                    gkey = ("outer", i2) if kind == "0ll" else ("direct", -1)
                    paths, rows, scales = grouped.setdefault(gkey, ([], [], []))
                    paths.append((kind, m, i2, len(chans), mul2, irr1.dim, irr2.dim, ir_o.dim, name))
                    for s, u in chans:  # rows (u, v) of instruction (s, i2, io), in channel order
                        start = offsets[(s, i2, io)] + u * mul2 * mul_o
                        rows.append(torch.arange(start, start + mul2 * mul_o).view(mul2, mul_o))
                    scales.append(torch.full((len(chans) * mul2, 1), k * base, dtype=torch.float64))
            groups = []
            for (mode, i2), (paths, rows, scales) in sorted(
                grouped.items(), key=lambda kv: (kv[0][0] != "direct", kv[0][1])
            ):
                idx = torch.cat(rows, 0)  # [K, mul_o]
                idx_all.append(idx.reshape(-1))
                scale_all.append(torch.cat(scales, 0).expand(-1, mul_o).reshape(-1))
                groups.append((mode, paths, idx.shape[0], i2))
            self._plan.append((io, ir_o.dim, groups))
        self._group_sizes = [t.numel() for t in idx_all]
        widx = torch.cat(idx_all) if idx_all else torch.zeros(0, dtype=torch.long)
        self.register_buffer("_widx", widx, persistent=False)
        scale = torch.cat(scale_all) if scale_all else torch.zeros(0, dtype=torch.float64)
        if bool((scale != 1.0).any()):
            self.register_buffer("_wscale", scale.to(torch.get_default_dtype()), persistent=False)
        else:
            self._wscale = None
        self._needs_x2 = self.has_in2 and not kinds_used <= {"000c", "l0lc"}
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
        for i1, i2, io in self._instructions:
            start = self._offsets[(i1, i2, io)]
            n = self.irreps_in1[i1].mul * self.irreps_in2[i2].mul * irreps_out[io].mul
            bound = 1.0 / math.sqrt(self.fan_in[io])
            w[start : start + n].uniform_(-bound, bound)
        self.weight.copy_(w)
        if self.bias is not None:
            for io, (a, b) in self._bias_loc.items():
                bound = 1.0 / math.sqrt(self.fan_in[io])
                self.bias[a:b].uniform_(-bound, bound)

    # ------------------------------------------------------------------ forward
    def _couple(self, path, x1s: list[torch.Tensor], x2s: list[torch.Tensor], Z: int) -> torch.Tensor:
        """Coupled features of one path, layout [Z, 2lo+1, mul1*mul2] (without the weights)."""
        kind, m, i2, mul1, mul2, d1, d2, do, w3j_name = path
        x = x1s[m]
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
        tensors = (x1,) if isinstance(x1, torch.Tensor) else tuple(x1)
        if len(tensors) != len(self._split1):
            raise ValueError(f"expected {len(self._split1)} input tensor(s), got {len(tensors)}")
        x1s: list[torch.Tensor] = []
        for t, sizes in zip(tensors, self._split1):
            x1s.extend(t.split(sizes, dim=-1) if len(sizes) > 1 else (t,))
        x2s: list[torch.Tensor] = []
        if self._needs_x2:
            assert x2 is not None, "this tensor product needs its second input"
            x2s = list(x2.split(self._split2, dim=-1)) if len(self._split2) > 1 else [x2]
        Z = tensors[0].shape[0]

        w_all = self.weight.index_select(0, self._widx)
        if self._wscale is not None:
            w_all = w_all * self._wscale
        w_groups = w_all.split(self._group_sizes) if len(self._group_sizes) > 1 else (w_all,)

        outs, g = [], 0
        for io, dim_o, groups in self._plan:
            mul_o = self._irreps_tp_out[io].mul
            acc: torch.Tensor | None = None
            for mode, paths, K, i2 in groups:
                w = w_groups[g].view(K, mul_o)
                g += 1
                if mode == "outer":  # Σ_u W[u,w] a_u y_k = y_k (a @ W)_w
                    a = [x1s[p[1]] for p in paths]
                    a = a[0] if len(a) == 1 else torch.cat(a, dim=-1)
                    y, aw = x2s[i2].unsqueeze(2), (a @ w).unsqueeze(1)
                    acc = y * aw if acc is None else torch.addcmul(acc, y, aw)
                    continue
                coupled = [self._couple(p, x1s, x2s, Z) for p in paths]
                c = coupled[0] if len(coupled) == 1 else torch.cat(coupled, dim=-1)
                if dim_o == 1:
                    c = c.reshape(Z, K)
                    if io in self._bias_loc:
                        lo_, hi_ = self._bias_loc[io]
                        r = torch.addmm(self.bias[lo_:hi_], c, w)
                    else:
                        r = c @ w
                else:
                    r = (c.reshape(Z * dim_o, K) @ w).view(Z, dim_o, mul_o)
                acc = r if acc is None else acc + r
            if acc is None:  # no path reaches this slot: e3nn outputs zeros
                acc = tensors[0].new_zeros((Z, mul_o) if dim_o == 1 else (Z, dim_o, mul_o))
            outs.append(acc)
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
    normalised to unit second moment (``normalize2mom``; the sigmoid's constant is folded into
    the gated slots' weights). When ``irreps_out`` has only the scalar slot, the activation is a
    plain (unnormalised) SiLU, as in SEGNN.
    """

    def __init__(self, irreps_in1, irreps_out, irreps_in2=None, in1_parts=None, in1_layout=None,
                 in2_scalar0: float | None = None) -> None:
        nn.Module.__init__(self)
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([irreps_out[0]])
        gated = o3.Irreps(list(irreps_out[1:]))
        if scalars[0].ir != o3.Irrep("0e") or any(ir.l == 0 for _, ir in gated):
            raise ValueError(f"gated irreps must be '<n>x0e + <non-scalars>', got {irreps_out}")
        n_gates = gated.num_irreps
        irreps_g = (scalars + o3.Irreps(f"{n_gates}x0e") + gated).simplify() if n_gates else scalars
        self._setup(irreps_in1, irreps_g, irreps_in2, True)
        self.irreps_out = irreps_out
        self.n_scalars = scalars.num_irreps
        self.gated_muls = [mul for mul, _ in irreps_g[1:]]
        self.silu_cst, self.sigmoid_cst = gate_constants()
        factors = {io: self.sigmoid_cst for io in range(1, len(irreps_g))}
        self._build(irreps_g, in1_parts, in1_layout, in2_scalar0, factors)

    def gate_blocks(self, x1, x2: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Gated output as per-slot blocks (scalars ``[Z, n]``, gated ``[Z, 2l+1, mul]``)."""
        blocks = self.blocks(x1, x2)
        if not self.gated_muls:
            return [torch.nn.functional.silu(blocks[0])]
        s = blocks[0]
        n = self.n_scalars
        out = [torch.nn.functional.silu(s[:, :n]) * self.silu_cst]
        gates = torch.sigmoid(s[:, n:])  # the sigmoid's 1/sqrt(E[σ²]) is folded into the weights
        g0 = 0
        for blk, mul in zip(blocks[1:], self.gated_muls):
            out.append(blk * gates[:, g0 : g0 + mul].unsqueeze(1))
            g0 += mul
        return out

    def forward(self, x1, x2: torch.Tensor | None = None) -> torch.Tensor:
        return self.assemble(self.gate_blocks(x1, x2))
