"""EGNO (ace.models.egno): parameter counts, the same function as a literal edge-list evaluation,
equivariance of f_eq to what it should respect (float64), broken equivariance with γ ≠ 0."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch

from ace.core.equivariance import equivariance_error, random_rotations
from ace.core.homotopic import (
    count_parameters,
    equivariant_mode,
    homotopic_branches,
    prune,
    relaxed_mode,
)
from ace.data.mocap import MoCapFixedHeightRotation, MoCapRotation, MoCapTask, skeleton_graph
from ace.data.mocap.task import HEIGHT_KEY as DATA_HEIGHT_KEY
from ace.models import EGNO
from ace.models.egno import HEIGHT_KEY, SpectralTimeConv, timestep_embedding
from tests.conftest import float64, to_device

# The literal edge-list evaluation is shared with scripts/bench_mocap.py, which times it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from egno_reference import reference_forward  # noqa: E402

# A 31-joint tree (a root, five chains of six): same size as the CMU skeleton, no data needed.
TREE = [(c, 0 if c % 6 == 1 else c - 1) for c in range(1, 31)]


def synthetic_batch(batch_size: int = 3, seed: int = 0, dtype=torch.float64) -> dict:
    g = torch.Generator().manual_seed(seed)
    edge_index, edge_type = skeleton_graph(TREE)
    loc = torch.randn(batch_size, 31, 3, generator=g, dtype=dtype) * 5
    loc[..., 1] = loc[..., 1].abs() + 1.0  # heights above the floor, as in the data
    vel = torch.randn(batch_size, 31, 3, generator=g, dtype=dtype) * 0.3
    target = loc.unsqueeze(1) + torch.randn(batch_size, 5, 31, 3, generator=g, dtype=dtype)
    return {"loc": loc, "vel": vel, "target_loc": target, "target_vel": torch.zeros_like(target),
            "edge_index": edge_index, "edge_type": edge_type}


def small_egno(ace: bool, seed: int = 0, **kwargs) -> EGNO:
    torch.manual_seed(seed)
    return EGNO(num_layers=2, hidden=16, ace_branches=ace, **kwargs)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def test_parameter_counts_match_table_3():
    vanilla, ace = EGNO(), EGNO(ace_branches=True)
    assert count_parameters(vanilla) == 1_192_684  # pure EGNO (experiments.md §4.2)
    assert count_parameters(ace) == 1_304_762  # Table 3, constrained
    assert count_parameters(prune(ace)) == 1_192_684
    # Table 3's vanilla figure = pure EGNO + the two unused entry linears of the official model
    assert 1_192_684 + (34 * 128 + 128) + (3 * 3 + 3) == 1_197_176


def test_twelve_gammas_h_stream_first_and_shared_x_entry():
    model = EGNO(ace_branches=True)
    branches = homotopic_branches(model)
    assert len(branches) == 12 and all(b.gamma.item() == 1.0 for b in branches)
    assert branches[:6] == list(model.h_branches) and branches[6:] == list(model.x_branches)
    entries = {id(b.f_neq.net[0]) for b in model.x_branches}
    assert len(entries) == 1  # one Linear(3→3) shared by every x branch


@pytest.mark.parametrize("ace", [False, True])
@pytest.mark.parametrize("train_mode", [False, True])
def test_same_function_as_the_edge_list_evaluation(ace, train_mode):
    with float64():
        model = EGNO(num_layers=3, hidden=32, ace_branches=ace)
        with torch.no_grad():
            for p in model.parameters():  # move every weight off its initial value
                p.add_(0.05 * torch.randn_like(p))
        reference = copy.deepcopy(model)  # BatchNorm statistics update independently
        model.train(train_mode), reference.train(train_mode)
        batch = synthetic_batch()
        out = model(batch)
        ref = reference_forward(reference, batch)
    assert out.shape == (3, 5, 31, 3)
    assert rel_err(out, ref) < 1e-12


def test_gradients_match_the_edge_list_evaluation():
    with float64():
        model = small_egno(ace=True)
        reference = copy.deepcopy(model)
        batch = synthetic_batch()
        model(batch).pow(2).mean().backward()
        reference_forward(reference, batch).pow(2).mean().backward()
    unused = []
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        if p.grad is None:  # the last layer's h update and h branch feed nothing (as upstream)
            assert q.grad is None, name
            unused.append(name)
            continue
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12), name
    assert all(n.startswith(("layers.1.node_mlp", "h_branches.1")) for n in unused)


def vertical_motion(batch_size: int, seed: int) -> torch.Tensor:
    """Rotations about y composed with horizontal translations, as [B, 4, 4]."""
    action = MoCapRotation(translation_std=10.0)
    g = torch.Generator().manual_seed(seed)
    return action.sample(synthetic_batch(batch_size), g)


@pytest.mark.parametrize("ace", [False, True])
def test_f_eq_is_equivariant_to_vertical_rotations_and_horizontal_translations(ace, device):
    action = MoCapRotation()
    with float64():
        model = small_egno(ace).eval().to(device)
        batch = to_device(synthetic_batch(), device)
        g = vertical_motion(3, seed=1)  # drawn on the CPU: the action moves it to the batch
        with equivariant_mode(model):
            out = model(batch)
            moved = model(action.act_on_batch(batch, g))
    assert g[:, 0, 3].abs().min() > 0.1  # a real translation
    assert rel_err(moved, action.act_on_output(out, g, batch)) < 1e-12


def test_relaxed_model_with_nonzero_gamma_is_not_equivariant():
    action = MoCapRotation()
    with float64():
        model = small_egno(ace=True).eval()
        batch = synthetic_batch()
        g = vertical_motion(3, seed=2)
        with relaxed_mode(model):
            err = rel_err(model(action.act_on_batch(batch, g)),
                          action.act_on_output(model(batch), g, batch))
    assert err > 1e-3


def test_f_eq_is_not_equivariant_to_tilting_rotations():
    """The height feature Z/Z_max singles out the y axis: a general rotation changes it."""
    action = MoCapRotation()
    with float64():
        model = small_egno(ace=False).eval()
        batch = synthetic_batch()
        rot = random_rotations(3, torch.Generator().manual_seed(3), dtype=torch.float64)
        out = model(batch)
        err = rel_err(model(action.act_on_batch(batch, rot)), action.act_on_output(out, rot, batch))
    assert err > 1e-4


# ------------------------------------------------ the paper's SO(3) protocol (Fig. 4, §7)
def test_heights_from_the_batch_are_optional_and_the_default_is_bit_identical():
    assert HEIGHT_KEY == DATA_HEIGHT_KEY == "height"  # one key, named on both sides of the arrow
    with float64():
        model = small_egno(ace=True).eval()
        batch = synthetic_batch()
        given = {**batch, "height": batch["loc"][..., 1].clone()}
        out = model(batch)
        assert torch.equal(model(given), out)
        assert rel_err(reference_forward(model, given), out) < 1e-12
        with pytest.raises(ValueError, match="height"):
            model({**batch, "height": batch["loc"][..., 1].flatten()})


def _so3_error(model, action, seed: int = 4) -> dict[str, torch.Tensor]:
    return equivariance_error(model, synthetic_batch(), action, num_samples=5,
                              generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("ace", [False, True])
def test_f_eq_with_fixed_height_is_equivariant_to_every_rotation(ace):
    """Z kept fixed (passed in, from the unrotated input): f_eq is SO(3)-equivariant, on the
    compared last frame and on every frame."""
    action = MoCapFixedHeightRotation()
    with float64():
        model = small_egno(ace).eval()
        batch = synthetic_batch()
        g = action.sample(batch, torch.Generator().manual_seed(5))
        with equivariant_mode(model):
            err = _so3_error(model, action)
            every_frame = rel_err(model(action.act_on_batch(batch, g)),
                                  action.act_on_output(model(batch), g, batch))
    assert (g[:, 1, 1] - 1).abs().min() > 1e-3  # tilting rotations, not only about y
    assert err["mean"] < 1e-10 and err["max"] < 1e-10
    assert every_frame < 1e-12


def test_height_recomputed_from_rotated_positions_breaks_so3_equivariance():
    """Without the fix (Z recomputed from the tilted skeleton) the same f_eq is far from
    equivariant: the error is not round-off but of the order of the positions' scale."""

    class RecomputedHeight(MoCapFixedHeightRotation):
        def act_on_batch(self, batch, g):
            out = super().act_on_batch(batch, g)
            del out["height"]
            return out

    with float64():
        model = small_egno(ace=True).eval()
        with equivariant_mode(model):
            err = _so3_error(model, RecomputedHeight())
    assert err["mean"] > 1e-3


def test_relaxed_model_is_not_so3_equivariant_even_with_fixed_height():
    with float64():
        model = small_egno(ace=True).eval()
        with relaxed_mode(model):  # γ = 1: the x-stream breaks rotation equivariance
            err = _so3_error(model, MoCapFixedHeightRotation())
    assert err["mean"] > 1e-3


def test_equivariance_error_compares_only_the_last_frame():
    action = MoCapFixedHeightRotation()
    with float64():
        model = small_egno(ace=True).eval()
        batch = synthetic_batch()
        with relaxed_mode(model):
            err = equivariance_error(model, batch, action, num_samples=1,
                                     generator=torch.Generator().manual_seed(6))
            g = action.sample(batch, torch.Generator().manual_seed(6))
            diff = (action.act_on_output(model(batch), g, batch)
                    - model(action.act_on_batch(batch, g)))
    assert torch.allclose(err["mean"], diff[:, -1].norm(dim=-1).mean(), rtol=1e-12, atol=0)
    assert not torch.allclose(err["mean"], diff.norm(dim=-1).mean(), rtol=1e-3, atol=0)


def test_equivariant_mode_is_the_pruned_model():
    with float64():
        model = small_egno(ace=True).eval()
        batch = synthetic_batch()
        with equivariant_mode(model):
            out = model(batch)
        pruned = prune(model)(batch)
        vanilla = small_egno(ace=False)
        vanilla.load_state_dict(prune(model).state_dict())
        assert torch.equal(out, pruned)
        assert torch.equal(out, vanilla.eval()(batch))


def test_spectral_time_conv_matches_the_truncated_dft():
    """x + irfft(W ⊙ rfft(x)) on the lowest modes, written out with explicit exponentials."""
    T = 5
    with float64():
        conv = SpectralTimeConv(3, 3, num_modes=2, init_scale=1.0)
        x = torch.randn(4, T, 7, 3)  # [N, T, B, C]
        out = conv(x)
    w = torch.view_as_complex(conv.weight.detach())
    t = torch.arange(T, dtype=torch.float64)
    expected = x.clone()
    for m, factor in ((0, 1.0), (1, 2.0)):  # DC once; mode 1 and its conjugate twice
        coeff = torch.einsum("ntbi,t->nbi", x.to(torch.complex128),
                             torch.exp(-2j * math.pi * m * t / T))
        mixed = torch.einsum("nbi,io->nbo", coeff, w[:, :, m])
        if m == 0:
            mixed = mixed.real.to(torch.complex128)  # a real transform drops the DC imaginary part
        expected += factor / T * torch.einsum(
            "nbo,t->ntbo", mixed, torch.exp(2j * math.pi * m * t / T)).real
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    with torch.no_grad():
        conv.weight.zero_()
    assert torch.equal(conv(x.float()), x.float())  # zero weights: the identity


def test_timestep_embedding_values():
    emb = timestep_embedding(torch.arange(5), 32)
    assert emb.shape == (5, 32)
    assert torch.allclose(emb[0], torch.cat([torch.zeros(16), torch.ones(16)]).double())
    w1 = math.exp(-math.log(10_000) / 15)  # second frequency
    assert emb[3, 1].item() == pytest.approx(math.sin(3 * w1))
    assert emb[3, 17].item() == pytest.approx(math.cos(3 * w1))


def test_training_lowers_the_loss(device):
    task = MoCapTask()
    model = small_egno(ace=True).to(device)
    batch = to_device(synthetic_batch(dtype=torch.float32), device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = task.loss(model(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_a_batched_graph_is_refused_with_a_clear_error():
    model = small_egno(ace=False)
    batch = synthetic_batch(2, dtype=torch.float32)
    batch["edge_index"] = torch.cat([batch["edge_index"], batch["edge_index"] + 31], dim=1)
    with pytest.raises(ValueError, match="per-sample graph"):
        model(batch)


def test_num_modes_must_fit_the_time_steps():
    with pytest.raises(ValueError, match="num_modes=4"):
        EGNO(num_modes=4, num_timesteps=5)
