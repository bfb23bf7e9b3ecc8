"""The "SEGNN Rel." baseline (experiments.md §6.3): so(3) generators, the Lie-derivative penalty
by hand and by finite differences, the relaxed SEGNN, and the triangle schedule in a real run."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from e3nn import o3
from torch import nn

from ace.core.equivariance import random_rotations
from ace.core.homotopic import count_parameters
from ace.models import SEGNNNBody
from ace.models.relaxation import (
    LieDerivativePenalty,
    RelaxedLinear,
    prune_all,
    relaxed_maps,
    set_relaxation_gamma,
    so3_generators,
    triangle_schedule,
)
from ace.training.pipeline import train
from tests.conftest import TINY_DATA, compose_cfg, float64

IRREPS = o3.Irreps("2x0e+3x1o+1x2e")


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _linear_matrix(lin: o3.Linear) -> torch.Tensor:
    """The matrix M of an e3nn Linear (``lin(x) = M x``, e3nn layout)."""
    eye = torch.eye(lin.irreps_in.dim, dtype=torch.float64)
    return lin(eye).T


@pytest.mark.parametrize("layout", [None, 3])
def test_generators_exponentiate_to_e3nn_wigner_matrices(layout):
    with float64():
        index = None if layout is None else _perm(IRREPS.dim, layout)
        gens = so3_generators(IRREPS, index)
        assert gens.shape == (3, IRREPS.dim, IRREPS.dim)
        a, b, c = torch.tensor(0.3), torch.tensor(-1.1), torch.tensor(2.0)
        D = IRREPS.D_from_angles(a, b, c)
        if index is not None:
            D = D[index][:, index]
        ours = torch.linalg.matrix_exp(a * gens[1]) @ torch.linalg.matrix_exp(b * gens[0]) \
            @ torch.linalg.matrix_exp(c * gens[1])
        assert torch.allclose(ours, D, atol=1e-12)
        if index is None:  # the two l = 0 rows and columns are zero
            assert gens[:, :2].abs().max() == 0 and gens[:, :, :2].abs().max() == 0


def _relaxed(irreps_in, irreps_out, seed, in_layout=None, out_layout=None, std=0.3):
    torch.manual_seed(seed)
    irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
    in_index = None if in_layout is None else _perm(irreps_in.dim, in_layout)
    out_index = None if out_layout is None else _perm(irreps_out.dim, out_layout)
    return RelaxedLinear(irreps_in, irreps_out, in_index, out_index, init_std=std), in_index, out_index


@pytest.mark.parametrize("layout", [(None, None), (1, 2)])
def test_lie_derivative_vanishes_for_an_equivariant_map_and_not_for_a_dense_one(layout):
    with float64():
        irreps_out = o3.Irreps("1x0e+2x1o+2x2e")
        m, in_index, out_index = _relaxed(IRREPS, irreps_out, 0, *layout)
        x = torch.randn(7, IRREPS.dim)
        ld_dense, n_dense = m.penalty_terms(x)
        assert ld_dense > 1e-2 and n_dense > 1e-2
        torch.manual_seed(1)
        M = _linear_matrix(o3.Linear(IRREPS, irreps_out))  # equivariant, e3nn layout
        if in_index is not None:
            M = M[out_index][:, in_index]
        with torch.no_grad():
            m.weight.copy_(M)
        ld, n = m.penalty_terms(x)
        assert ld < 1e-24 * n and n > 1e-2


def test_lie_derivative_equals_a_finite_difference_along_each_generator():
    with float64():
        irreps_out = o3.Irreps("3x0e+1x1o+1x2e")
        m, in_index, out_index = _relaxed(IRREPS, irreps_out, 4, 5, 6)
        x = torch.randn(6, IRREPS.dim)
        W = m.weight.detach()
        t = 1e-5
        total = 0.0
        for g in range(3):
            def path(s):  # exp(−s A_out) W exp(s A_in) x
                return (torch.linalg.matrix_exp(-s * m.gen_out[g]) @ W
                        @ torch.linalg.matrix_exp(s * m.gen_in[g]) @ x.T).T
            fd = (path(t) - path(-t)) / (2 * t)
            # the definition: W(A_g x) − A_g(W x)
            exact = (W @ (m.gen_in[g] @ x.T) - m.gen_out[g] @ (W @ x.T)).T
            assert (fd - exact).norm() < 1e-6 * exact.norm()
            total += fd.pow(2).sum()
        ld, _ = m.penalty_terms(x)
        assert float(ld.detach()) == pytest.approx(float(total), rel=1e-6)


def test_penalty_by_hand_detaches_inputs_and_clears_them():
    with float64():
        net = nn.ModuleDict({
            "a": _relaxed(IRREPS, "2x1o", 7, 8, None)[0],
            "b": _relaxed("2x1o", "1x0e+1x1o", 9, None, 3)[0],
        }).train()
        set_relaxation_gamma(net, 0.5)
        x = torch.randn(4, IRREPS.dim, requires_grad=True)
        y = net["a"](torch.zeros(4, 6), x)
        z = net["b"](torch.zeros(4, 4), y)
        assert torch.allclose(y, 0.5 * x @ net["a"].weight.T)
        assert torch.allclose(z, 0.5 * y @ net["b"].weight.T)
        ld = norm = 0.0
        for m, inp in ((net["a"], x), (net["b"], y)):
            W, gin, gout = m.weight, m.gen_in, m.gen_out
            for g in range(3):
                for row in inp.detach():
                    ld = ld + (W @ (gin[g] @ row) - gout[g] @ (W @ row)).pow(2).sum()
            norm = norm + sum((W @ row).pow(2).sum() for row in inp.detach())
        expected = 0.01 * (math.sqrt(float(ld)) + math.sqrt(float(norm)))
        penalty = LieDerivativePenalty(0.01)(net)
        assert float(penalty) == pytest.approx(expected, rel=1e-12)
        penalty.backward()
        assert x.grad is None  # inputs detached: only the maps' weights get gradients
        assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in relaxed_maps(net))
        with pytest.raises(RuntimeError, match="no input"):
            LieDerivativePenalty(0.01)(net)  # consumed: one penalty per forward
        with pytest.raises(ValueError, match="relaxed maps"):
            LieDerivativePenalty()(nn.Linear(2, 2))


def _batch(seed=0, B=3):
    g = torch.Generator().manual_seed(seed)
    return {"loc": torch.randn(B, 5, 3, generator=g) * 2, "vel": torch.randn(B, 5, 3, generator=g),
            "charges": (torch.randint(0, 2, (B, 5, 1), generator=g) * 2 - 1).double()}


def _rotated(batch, R):
    return {**batch, "loc": batch["loc"] @ R.T, "vel": batch["vel"] @ R.T}


def _max_rot_error(model, batch):
    out = model(batch)
    rots = random_rotations(3, torch.Generator().manual_seed(2), dtype=torch.float64)
    return max(((model(_rotated(batch, R)) - out @ R.T).norm() / out.norm()).item() for R in rots)


def test_relaxed_segnn_counts_layout_and_modes():
    with float64(), torch.no_grad():
        torch.manual_seed(0)
        model = SEGNNNBody(relaxation=True)
        assert count_parameters(model) == 344_032
        assert len(relaxed_maps(model)) == 8
        assert {tuple(m.weight.shape) for m in relaxed_maps(model)} == {(128, 256), (128, 128)}
        pruned = prune_all(model)
        assert count_parameters(pruned) == 147_424 and not relaxed_maps(pruned)
        batch = _batch()
        set_relaxation_gamma(model, 1.0)
        # evaluation: γ = 0, the maps are not run; exactly the pruned, equivariant model
        model.eval()
        out = model(batch)
        assert torch.equal(out, pruned.eval()(batch))
        assert _max_rot_error(model, batch) < 1e-10
        # training with dense maps: not equivariant
        model.train()
        for m in relaxed_maps(model):
            m.weight.normal_(0, 0.1)
        assert not torch.allclose(model(batch), out)
        assert _max_rot_error(model, batch) > 1e-4
        # training with equivariant maps in each map's own layout: equivariant again, LD = 0
        torch.manual_seed(1)
        for m in relaxed_maps(model):
            M = _linear_matrix(o3.Linear(m.irreps_in, m.irreps_out))
            m.weight.copy_(_to_layout(M, m))
        assert _max_rot_error(model, batch) < 1e-10
        model(batch)
        assert all(m.penalty_terms(m.last_input)[0] < 1e-20 for m in relaxed_maps(model))


def _to_layout(M: torch.Tensor, m: RelaxedLinear) -> torch.Tensor:
    """An e3nn-layout matrix in the layout of ``m``: the permutations that map the e3nn
    generators onto ``m``'s (recovered from the layout indices the SEGNN layer uses)."""
    from ace.models.segnn.layout import channels_last_index, concat_channels_e3nn_index

    h = o3.Irreps("32x0e+32x1o")
    out_index = channels_last_index(m.irreps_out)
    in_index = (torch.argsort(concat_channels_e3nn_index(h, 2)) if m.irreps_in.dim == 2 * h.dim
                else channels_last_index(m.irreps_in))
    assert torch.equal(so3_generators(m.irreps_in, in_index), m.gen_in)
    assert torch.equal(so3_generators(m.irreps_out, out_index), m.gen_out)
    return M[out_index][:, in_index]


def test_triangle_schedule_values():
    E = 10
    values = [triangle_schedule(e, E) for e in range(E)]
    assert values == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4, 0.2])
    assert triangle_schedule(E - 1, E) == pytest.approx(2 / E)
    assert [triangle_schedule(e, 5) for e in range(5)] == pytest.approx([0, 0.4, 0.8, 0.8, 0.4])


def test_rel_run_follows_the_schedule_and_evaluates_gamma_zero(tmp_path, data_dir):
    cfg = compose_cfg([
        "experiment=nbody_segnn_rel", f"paths.data_dir={data_dir}", *TINY_DATA,
        "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false", "callbacks=none", "logger=csv",
        "model.eq_error_samples=1", "model.optimizer.lr=3e-3", "seed=1",
    ], tmp_path)
    results = train(cfg)
    frame = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    gamma = frame[["epoch", "relaxation/gamma"]].dropna()
    assert gamma["epoch"].astype(int).tolist() == [0, 1, 2, 3]
    assert gamma["relaxation/gamma"].tolist() == pytest.approx([0.0, 0.5, 1.0, 0.5])
    assert (frame["train/regularizer_epoch"].dropna() > 0).all()
    assert set(results["modes"]) == {"eq"} and results["parameters"]["num_gammas"] == 0
    assert results["parameters"]["train"] == 344_032
    assert results["parameters"]["pruned"] == 147_424
    loss = frame["train/loss_epoch"].dropna().to_numpy()
    assert loss[-1] < loss[0]
    pruned = torch.load(tmp_path / "feq_pruned.pt", weights_only=False)
    assert count_parameters(pruned) == 147_424
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["modes"]["eq"]["test"] == pytest.approx(results["modes"]["eq"]["test"])
