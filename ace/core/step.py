"""One primal–dual iteration of Alg. 1 / corrected Alg. 2, in the order of ``ace_algorithm.md`` §4.

1. the task loss J_0 has been computed in relaxed mode at (θ^(t), γ^(t));
2. the slacks s^(t) are recorded (detached) from γ^(t) (and u^(t));
3. the Lagrangian is back-propagated with λ^(t) held constant;
4. optional gradient clipping (``before_primal_step``);
5. primal step on θ, γ and u, then u ≥ 0;
6. dual step with the recorded s^(t) (simultaneous gradient descent–ascent);
7. λ ≥ 0 for inequality constraints only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ace.core.constraints import HomotopyConstraint


@dataclass
class StepOutput:
    lagrangian: torch.Tensor  # detached value of the objective that was back-propagated
    slack: torch.Tensor | None  # s^(t), detached; None without a constraint


def _default_backward(tensor: torch.Tensor) -> None:
    tensor.backward()


def primal_dual_step(
    task_loss: torch.Tensor,
    gamma: torch.Tensor | None,
    constraint: HomotopyConstraint | None,
    primal_optimizer,
    dual_optimizer: torch.optim.Optimizer | None,
    backward: Callable[[torch.Tensor], None] = _default_backward,
    before_primal_step: Callable[[], None] | None = None,
) -> StepOutput:
    """Run steps 2–7 above. Without a constraint this is a plain optimizer step on J_0.

    ``primal_optimizer`` may be a torch optimizer or Lightning's wrapper; ``backward`` lets the
    LightningModule pass ``self.manual_backward`` (precision and DDP hooks).
    """
    primal_optimizer.zero_grad()
    if constraint is None:
        objective, slack = task_loss, None
    else:
        if gamma is None or dual_optimizer is None:
            raise ValueError("a constraint needs the model's γ and a dual optimizer")
        objective, slack = constraint.lagrangian(task_loss, gamma)
    backward(objective)
    if before_primal_step is not None:
        before_primal_step()
    primal_optimizer.step()
    if constraint is not None:
        constraint.project_primal()
        constraint.dual_step(dual_optimizer, slack)
    return StepOutput(lagrangian=objective.detach(), slack=slack)
