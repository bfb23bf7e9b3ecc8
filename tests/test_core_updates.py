"""One primal–dual step of each formulation against updates computed by hand (float64).

Toy model: y_hat = θ·x + γ·(φ·x) with a HomotopicBranch, loss J_0 = (y_hat − y)², x = 1, y = 0,
θ = 0.5, φ = 0.3. Then dJ/dy_hat = 2·y_hat, ∂J/∂θ = 2·y_hat, ∂J/∂γ = 2·y_hat·φ, ∂J/∂φ = 2·y_hat·γ.
Plain SGD primal (η_p) and plain SGD dual (η_d) — the paper's Alg. 1 and corrected Alg. 2.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ace.core.constraints import EqualityConstraint, OneSidedConstraint, ResilientConstraint
from ace.core.homotopic import HomotopicBranch, gammas
from ace.core.step import primal_dual_step

ETA_P, ETA_D = 0.1, 0.5


class Toy(nn.Module):
    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.theta = nn.Linear(1, 1, bias=False, dtype=torch.float64)
        self.branch = HomotopicBranch(nn.Linear(1, 1, bias=False, dtype=torch.float64), gamma)
        self.double()
        with torch.no_grad():
            self.theta.weight.fill_(0.5)
            self.branch.f_neq.weight.fill_(0.3)

    def forward(self, x):
        return self.branch(self.theta(x), x)


def run_step(constraint, gamma0, lam0, u0=None, eta_p=ETA_P, device="cpu"):
    torch.manual_seed(0)
    model = Toy(gamma0).to(device)
    constraint = constraint.double().to(device)
    with torch.no_grad():
        constraint.dual.fill_(lam0)
        if u0 is not None:
            constraint.slack_u.fill_(u0)
    params = list(model.parameters()) + constraint.primal_parameters()
    primal = torch.optim.SGD(params, lr=eta_p)
    dual = constraint.make_dual_optimizer()
    x = torch.ones(1, 1, dtype=torch.float64, device=device)
    loss = model(x).pow(2).sum()
    out = primal_dual_step(loss, gammas(model), constraint, primal, dual)
    return model, constraint, out


def grads(gamma):
    y_hat = 0.5 + gamma * 0.3
    return {"theta": 2 * y_hat, "gamma": 2 * y_hat * 0.3, "phi": 2 * y_hat * gamma}


def test_equality_step_alg1_by_hand(device):
    model, c, out = run_step(EqualityConstraint(1, dual_lr=ETA_D), gamma0=1.0, lam0=0.2,
                             device=device)
    # y_hat = 0.8: ∂J/∂θ = 1.6, ∂J/∂γ = 0.48, ∂J/∂φ = 1.6
    assert model.theta.weight.item() == pytest.approx(0.5 - 0.1 * 1.6, abs=1e-15)
    assert model.branch.f_neq.weight.item() == pytest.approx(0.3 - 0.1 * 1.6, abs=1e-15)
    assert model.branch.gamma.item() == pytest.approx(1.0 - 0.1 * (0.48 + 0.2), abs=1e-15)  # 0.932
    assert c.dual.item() == pytest.approx(0.2 + 0.5 * 1.0, abs=1e-15)  # pre-update γ: 0.7
    assert out.slack.item() == 1.0
    assert out.lagrangian.item() == pytest.approx(0.64 + 0.2 * 1.0, abs=1e-15)


def test_equality_dual_is_never_projected():
    _, c, _ = run_step(EqualityConstraint(1, dual_lr=ETA_D), gamma0=-1.0, lam0=0.1)
    assert c.dual.item() == pytest.approx(0.1 + 0.5 * (-1.0), abs=1e-15)  # -0.4 stays negative


@pytest.mark.parametrize("gamma0", [1.0, -1.0])
def test_resilient_step_corrected_alg2_by_hand(gamma0, device):
    lam0, u0, rho = 0.2, 0.1, 1.0
    model, c, out = run_step(
        ResilientConstraint(1, dual_lr=ETA_D, rho=rho), gamma0=gamma0, lam0=lam0, u0=u0,
        device=device,
    )
    g = grads(gamma0)
    sign = math.copysign(1.0, gamma0)
    # γ step with the sign(γ) term that the printed Alg. 2 omits
    assert model.branch.gamma.item() == pytest.approx(
        gamma0 - ETA_P * (g["gamma"] + lam0 * sign), abs=1e-15
    )
    # u step is *descent* on (ρ/2)u² − λu, then projected onto u >= 0
    assert c.slack_u.item() == pytest.approx(max(0.0, u0 - ETA_P * (rho * u0 - lam0)), abs=1e-15)
    # λ ascent along |γ^(t)| − u^(t), projected onto λ >= 0
    assert c.dual.item() == pytest.approx(max(0.0, lam0 + ETA_D * (abs(gamma0) - u0)), abs=1e-15)
    assert out.slack.item() == pytest.approx(abs(gamma0) - u0, abs=1e-15)
    assert model.theta.weight.item() == pytest.approx(0.5 - ETA_P * g["theta"], abs=1e-15)


def test_resilient_projections_clip_u_and_lambda_at_zero():
    # u: 0.05 − 30·(0.05 − 0) < 0 -> 0;  λ: 0.2 + 0.5·(1 − 5) < 0 -> 0
    _, c, _ = run_step(ResilientConstraint(1, dual_lr=ETA_D), 1.0, lam0=0.0, u0=0.05, eta_p=30.0)
    assert c.slack_u.item() == 0.0
    _, c, _ = run_step(ResilientConstraint(1, dual_lr=ETA_D), 1.0, lam0=0.2, u0=5.0)
    assert c.dual.item() == 0.0
    # and u moves towards λ/ρ when λ > ρu: 0.1 − 0.1·(0.1 − 0.9) = 0.18
    _, c, _ = run_step(ResilientConstraint(1, dual_lr=ETA_D), 1.0, lam0=0.9, u0=0.1)
    assert c.slack_u.item() == pytest.approx(0.18, abs=1e-15)


def test_resilient_sign_of_zero_gamma_is_zero():
    model, c, _ = run_step(ResilientConstraint(1, dual_lr=ETA_D), gamma0=0.0, lam0=0.7, u0=0.0)
    # ∂J/∂γ = 2·0.5·0.3 = 0.3; λ·sign(0) = 0
    assert model.branch.gamma.item() == pytest.approx(-0.1 * 0.3, abs=1e-15)


def test_one_sided_official_egno_mode():
    # s = γ (signed), λ projected: λ = max(0, 0.1 + 0.5·(−1)) = 0
    _, c, out = run_step(OneSidedConstraint(1, dual_lr=ETA_D), gamma0=-1.0, lam0=0.1)
    assert c.dual.item() == 0.0 and out.slack.item() == -1.0
    _, c, _ = run_step(OneSidedConstraint(1, dual_lr=ETA_D), gamma0=1.0, lam0=0.1)
    assert c.dual.item() == pytest.approx(0.6, abs=1e-15)


def test_adam_dual_first_step_moves_by_lr_times_sign():
    # Adam's first step: m̂ = g, v̂ = g², so λ1 = λ0 − lr·g/(|g| + eps) with g = −s
    eps = 1e-8
    c = EqualityConstraint(1, dual_lr=1e-3, dual_optimizer="adam", dual_adam_eps=eps)
    _, c, out = run_step(c, gamma0=0.25, lam0=0.0)
    s = out.slack.item()
    assert c.dual.item() == pytest.approx(1e-3 * s / (abs(s) + eps), rel=1e-12)


def test_several_constraints_are_independent():
    c = EqualityConstraint(3, dual_lr=0.5).double()
    gamma = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64, requires_grad=True)
    lagrangian, slack = c.lagrangian(torch.tensor(0.0, dtype=torch.float64), gamma)
    lagrangian.backward()
    assert torch.equal(gamma.grad, torch.zeros(3, dtype=torch.float64))  # λ^(0) = 0
    c.dual_step(c.make_dual_optimizer(), slack)
    assert torch.allclose(c.dual, torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64))


def test_constraint_errors_are_clear():
    with pytest.raises(ValueError, match="constraint=none"):
        EqualityConstraint(0, dual_lr=1e-3)
    with pytest.raises(ValueError, match="dual_optimizer"):
        EqualityConstraint(2, dual_lr=1e-3, dual_optimizer="rmsprop")
    with pytest.raises(ValueError, match="2 γ values for 3 constraints"):
        EqualityConstraint(3, dual_lr=1e-3).lagrangian(torch.tensor(0.0), torch.zeros(2))


@pytest.mark.parametrize("cls", [EqualityConstraint, OneSidedConstraint])
def test_dual_step_reads_the_pre_step_gamma_even_for_a_leaf_gamma(cls):
    """s = γ for these constraints: with γ passed as the leaf parameter itself, a detached view
    would show the dual step the post-step value. J_0 = 2γ: γ^(1) = 0.5 − η_p·(2 + λ^(0))."""
    gamma = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
    constraint = cls(num_constraints=1, dual_lr=ETA_D).double()
    primal = torch.optim.SGD([gamma], lr=ETA_P)
    out = primal_dual_step(2 * gamma.sum(), gamma, constraint, primal,
                           constraint.make_dual_optimizer())
    assert gamma.item() == pytest.approx(0.5 - ETA_P * 2.0)
    assert out.slack.item() == pytest.approx(0.5)
    assert constraint.dual.item() == pytest.approx(ETA_D * 0.5)  # λ^(1) = λ^(0) + η_d·γ^(0)


def test_one_sided_equals_equality_until_a_dual_reaches_zero():
    """Why 150 MoCap epochs cannot tell the official one-sided mode (ACE‡) from Alg. 1: with
    s = γ in both, the Lagrangians and dual steps coincide while every λ_i > 0, i.e. until some γ_i
    has stayed below 0 long enough to pull its λ_i back to 0. Past that point the one-sided λ_i is
    held at 0 and γ_i < 0 goes unpenalised. Adam duals as in the paper configs (eps 1e-4)."""
    def trajectory(cls, steps=400):
        torch.manual_seed(0)
        model = Toy(1.0)
        c = cls(1, dual_lr=0.02, dual_optimizer="adam", dual_adam_eps=1e-4).double()
        primal = torch.optim.SGD(list(model.parameters()), lr=0.05)
        dual = c.make_dual_optimizer()
        x = torch.ones(1, 1, dtype=torch.float64)
        out = []
        for _ in range(steps):
            loss = (model(x) - 1.0).pow(2).sum()  # the task prefers γ > 0: J_0 pulls against λ
            primal_dual_step(loss, gammas(model), c, primal, dual)
            out.append((model.branch.gamma.item(), c.dual.item()))
        return torch.tensor(out, dtype=torch.float64)

    eq, one = trajectory(EqualityConstraint), trajectory(OneSidedConstraint)
    apart = int(torch.nonzero((eq - one).abs().amax(1) > 0)[0])  # first step that differs
    assert apart > 10 and torch.equal(eq[:apart], one[:apart])
    assert (one[:apart, 1] > 0).all() and one[apart, 1] == 0.0  # the first zero λ is the split
    assert (eq[:apart, 0] > 0).any() and (eq[:apart, 0] < 0).any()  # γ had crossed 0 before
    assert (one[:, 1] >= 0).all() and (eq[:, 1] < 0).any()


# ----------------------------------------------------------------------------------------------
# nuPI duals and the augmented-Lagrangian term (issue 16)
# ----------------------------------------------------------------------------------------------
SLACKS = ([0.8, -0.3], [0.5, -0.1], [-0.2, 0.4], [0.1, 0.0], [0.3, -0.6])


def _nupi(cls=EqualityConstraint, device="cpu", **kw):
    c = cls(2, dual_lr=kw.pop("lr", 0.1), dual_optimizer="nupi", **kw).double().to(device)
    return c, c.make_dual_optimizer()


def _by_hand(kp, ki, nu, eta=0.1, lam0=(0.0, 0.0), project=False):
    """λ_{t+1} = λ_t + η(κ_I s_t + κ_P(ξ_t − ξ_{t−1})), ξ_t = ν ξ_{t−1} + (1 − ν) s_t, ξ_{−1} = 0."""
    lam, xi, out = list(lam0), [0.0, 0.0], []
    for s in SLACKS:
        for i in range(2):
            new_xi = nu * xi[i] + (1 - nu) * s[i]
            lam[i] = lam[i] + eta * (ki * s[i] + kp * (new_xi - xi[i]))
            lam[i] = max(lam[i], 0.0) if project else lam[i]
            xi[i] = new_xi
        out.append(list(lam))
    return out


@pytest.mark.parametrize("kp, ki, nu", [(3.0, 0.5, 0.3), (1.0, 1e-3, 0.0), (0.0, 1.0, 0.0),
                                        (2.0, 0.0, 0.9)])
def test_nupi_dual_steps_follow_the_equations_by_hand(kp, ki, nu, device):
    c, opt = _nupi(dual_kp=kp, dual_ki=ki, dual_ema_nu=nu, device=device)
    expected = _by_hand(kp, ki, nu)
    for s, lam in zip(SLACKS, expected):
        c.dual_step(opt, torch.tensor(s, dtype=torch.float64, device=device))
        assert c.dual.tolist() == pytest.approx(lam, abs=1e-15)
    # the first step is η(κ_I + κ_P(1 − ν)) s_0 (ξ_{−1} = 0, not cooper's default SGD start)
    assert expected[0][0] == pytest.approx(0.1 * (ki + kp * (1 - nu)) * 0.8, abs=1e-15)


def test_nupi_special_cases_are_plain_and_optimistic_ascent():
    plain, opt_plain = _nupi(dual_kp=0.0, dual_ki=1.0)
    sgd = EqualityConstraint(2, dual_lr=0.1).double()
    opt_sgd = sgd.make_dual_optimizer()
    optimistic, opt_opt = _nupi(dual_kp=1.0, dual_ki=1.0, dual_ema_nu=0.0)
    previous = torch.zeros(2, dtype=torch.float64)
    lam = torch.zeros(2, dtype=torch.float64)
    for s in SLACKS:
        s = torch.tensor(s, dtype=torch.float64)
        for c, opt in ((plain, opt_plain), (sgd, opt_sgd), (optimistic, opt_opt)):
            c.dual_step(opt, s)
        lam = lam + 0.1 * (2 * s - previous)  # optimistic: λ + η(2 s_t − s_{t−1})
        previous = s
        assert torch.equal(plain.dual, sgd.dual)
        assert torch.allclose(optimistic.dual, lam, atol=1e-15)


def test_nupi_projection_for_inequality_constraints():
    c, opt = _nupi(OneSidedConstraint, dual_kp=3.0, dual_ki=0.5, dual_ema_nu=0.3)
    for s in SLACKS:
        c.dual_step(opt, torch.tensor(s, dtype=torch.float64))
        assert (c.dual >= 0).all()
    # the controller's ξ keeps the unprojected history: after the clamp, the next steps start
    # from the projected λ (what `_by_hand(..., project=True)` does)
    assert c.dual.tolist() == pytest.approx(_by_hand(3.0, 0.5, 0.3, project=True)[-1], abs=1e-15)


def test_nupi_state_resumes_exactly_from_a_checkpoint():
    full, opt_full = _nupi(dual_kp=3.0, dual_ki=0.5, dual_ema_nu=0.3)
    first, opt_first = _nupi(dual_kp=3.0, dual_ki=0.5, dual_ema_nu=0.3)
    for s in SLACKS:
        full.dual_step(opt_full, torch.tensor(s, dtype=torch.float64))
    for s in SLACKS[:2]:
        first.dual_step(opt_first, torch.tensor(s, dtype=torch.float64))
    saved = {"constraint": first.state_dict(), "optimizer": opt_first.state_dict()}
    resumed, opt_resumed = _nupi(dual_kp=3.0, dual_ki=0.5, dual_ema_nu=0.3)
    resumed.load_state_dict(saved["constraint"])
    opt_resumed.load_state_dict(saved["optimizer"])
    assert opt_resumed.state[resumed.dual]["xi"].abs().sum() > 0  # ξ travels with the optimizer
    for s in SLACKS[2:]:
        resumed.dual_step(opt_resumed, torch.tensor(s, dtype=torch.float64))
    assert torch.equal(resumed.dual, full.dual)


def test_bad_nupi_and_penalty_settings_are_refused():
    with pytest.raises(ValueError, match="dual_kp and constraint.dual_ki"):
        EqualityConstraint(1, dual_lr=0.1, dual_optimizer="nupi", dual_kp=0.0, dual_ki=0.0)
    with pytest.raises(ValueError, match="dual_ema_nu"):
        EqualityConstraint(1, dual_lr=0.1, dual_optimizer="nupi", dual_ema_nu=1.0)
    with pytest.raises(ValueError, match="constraint.penalty"):
        EqualityConstraint(1, dual_lr=0.1, penalty=-1.0)


def test_augmented_lagrangian_step_by_hand():
    """Alg. 1 with (c/2)·γ²: the γ-gradient gains c·γ^(t); the dual step is unchanged."""
    cpen = 0.4
    model, c, out = run_step(EqualityConstraint(1, dual_lr=ETA_D, penalty=cpen), gamma0=1.0,
                             lam0=0.2)
    # y_hat = 0.8: ∂J/∂γ = 0.48; + λ = 0.2; + c·γ = 0.4
    assert model.branch.gamma.item() == pytest.approx(1.0 - 0.1 * (0.48 + 0.2 + 0.4), abs=1e-15)
    assert model.theta.weight.item() == pytest.approx(0.5 - 0.1 * 1.6, abs=1e-15)
    assert c.dual.item() == pytest.approx(0.2 + 0.5 * 1.0, abs=1e-15)
    assert out.lagrangian.item() == pytest.approx(0.64 + 0.2 * 1.0 + 0.5 * cpen * 1.0, abs=1e-15)
    # resilient: the term acts on s = |γ| − u
    model, c, out = run_step(ResilientConstraint(1, dual_lr=ETA_D, penalty=cpen), gamma0=-1.0,
                             lam0=0.2, u0=0.1)
    g, s = grads(-1.0), 1.0 - 0.1
    assert model.branch.gamma.item() == pytest.approx(
        -1.0 - ETA_P * (g["gamma"] + (0.2 + cpen * s) * -1.0), abs=1e-15)
    assert c.slack_u.item() == pytest.approx(0.1 - ETA_P * (0.1 - 0.2 - cpen * s), abs=1e-15)
