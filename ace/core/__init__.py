"""ACE core: homotopic layers, constraints with dual variables, equivariance error."""

from ace.core.constraints import (
    EqualityConstraint,
    HomotopyConstraint,
    OneSidedConstraint,
    ResilientConstraint,
)
from ace.core.equivariance import GroupAction, equivariance_error, random_rotations
from ace.core.homotopic import (
    Homotopic,
    HomotopicBranch,
    PrunedBranch,
    count_parameters,
    equivariant_mode,
    gammas,
    homotopic_branches,
    num_gammas,
    prune,
    relaxed_mode,
    set_relaxed,
)
