"""Mode switch, pruning and γ bookkeeping of ace.core.homotopic on a small model with BatchNorm."""

from __future__ import annotations

import torch
from torch import nn

from ace.core.homotopic import (
    Homotopic,
    HomotopicBranch,
    count_parameters,
    equivariant_mode,
    gammas,
    homotopic_branches,
    num_gammas,
    prune,
    relaxed_mode,
    set_relaxed,
)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        Homotopic(nn.Linear(4, 4), nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 4))),
        nn.Tanh(),
        Homotopic(nn.Linear(4, 2), nn.Linear(4, 2), gamma_init=0.5),
    )


def vanilla() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))


def test_gammas_in_layer_order_and_init():
    model = make_model()
    assert num_gammas(model) == 2
    assert gammas(model).tolist() == [1.0, 0.5]
    assert all(isinstance(b, HomotopicBranch) for b in homotopic_branches(model))


def test_equivariant_mode_skips_branches_and_their_batchnorm(device):
    model = make_model().train().to(device)
    x = torch.randn(8, 4).to(device)
    bn = model[0].branch.f_neq[0]
    with equivariant_mode(model):
        out_eq = model(x)
    assert bn.num_batches_tracked.item() == 0  # f_neq never ran
    expected = model[2].f_eq(torch.tanh(model[0].f_eq(x)))
    assert torch.equal(out_eq, expected)
    out_relaxed = model(x)  # mode restored to relaxed on exit
    assert bn.num_batches_tracked.item() == 1
    assert not torch.allclose(out_relaxed, out_eq)


def test_mode_context_restores_previous_mode():
    model = make_model()
    set_relaxed(model, False)
    with relaxed_mode(model):
        assert all(b.relaxed for b in homotopic_branches(model))
    assert not any(b.relaxed for b in homotopic_branches(model))


def test_gamma_zero_equals_projection():
    model = make_model().eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        for b in homotopic_branches(model):
            b.gamma.zero_()
    with equivariant_mode(model):
        out_eq = model(x)
    assert torch.allclose(model(x), out_eq, atol=0, rtol=0)


def test_prune_removes_fneq_and_gamma_and_keeps_feq_outputs(device):
    model = make_model().eval().to(device)
    pruned = prune(model)
    assert count_parameters(pruned) == count_parameters(vanilla())
    assert num_gammas(pruned) == 0 and num_gammas(model) == 2  # the original is untouched
    x = torch.randn(6, 4).to(device)
    with equivariant_mode(model):
        assert torch.equal(pruned(x), model(x))


def test_forward_stream_returns_the_branch_output_and_skips_it_in_equivariant_mode():
    torch.manual_seed(1)
    branch = HomotopicBranch(nn.Linear(3, 4), gamma_init=0.25)
    eq_out, x = torch.randn(5, 4), torch.randn(5, 3)
    out, neq = branch.forward_stream(eq_out, x)
    assert torch.equal(neq, branch.f_neq(x))
    assert torch.allclose(out, eq_out + 0.25 * neq)
    assert torch.equal(out, branch(eq_out, x))
    branch.relaxed = False
    out, neq = branch.forward_stream(eq_out, x)
    assert neq is None and torch.equal(out, eq_out)
    pruned = prune(nn.Sequential(branch))[0]
    assert pruned.forward_stream(eq_out, x) == (eq_out, None)
