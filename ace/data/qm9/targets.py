"""The 12 QM9 regression targets of the paper (Table 2), their PyG column and unit.

PyG's ``QM9.y`` has 19 columns (``ecosystem_notes.md`` §1.3); the first 12 are the standard
benchmark targets. Energies are in eV in PyG (Hartree × 27.211386246); papers quote their MAEs in
meV, hence ``alternative_units = {"meV": 1000.0}`` for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["QM9Target", "TARGETS", "TARGET_NAMES", "NUM_Y_COLUMNS", "resolve_target"]

#: number of columns of PyG's QM9 ``y``
NUM_Y_COLUMNS = 19

_METER = MappingProxyType({"meV": 1000.0})
_NONE: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class QM9Target:
    name: str         # as in the paper's tables: mu alpha homo lumo gap r2 zpve U0 U H G cv
    index: int        # column of PyG's ``y``
    unit: str         # unit of that column (and of the reported MAE)
    description: str

    @property
    def alternative_units(self) -> Mapping[str, float]:
        """{unit: scale} to report the MAE in other units (meV for eV targets)."""
        return _METER if self.unit == "eV" else _NONE


TARGETS: tuple[QM9Target, ...] = (
    QM9Target("mu", 0, "D", "dipole moment"),
    QM9Target("alpha", 1, "a0^3", "isotropic polarizability"),
    QM9Target("homo", 2, "eV", "HOMO energy"),
    QM9Target("lumo", 3, "eV", "LUMO energy"),
    QM9Target("gap", 4, "eV", "HOMO-LUMO gap"),
    QM9Target("r2", 5, "a0^2", "electronic spatial extent"),
    QM9Target("zpve", 6, "eV", "zero point vibrational energy"),
    QM9Target("U0", 7, "eV", "internal energy at 0 K"),
    QM9Target("U", 8, "eV", "internal energy at 298.15 K"),
    QM9Target("H", 9, "eV", "enthalpy at 298.15 K"),
    QM9Target("G", 10, "eV", "free energy at 298.15 K"),
    QM9Target("cv", 11, "cal/(mol K)", "heat capacity at 298.15 K"),
)
TARGET_NAMES: tuple[str, ...] = tuple(t.name for t in TARGETS)
_BY_NAME = {t.name: t for t in TARGETS}


def resolve_target(target: str | int | QM9Target) -> QM9Target:
    """A target by name (exact, else case-insensitive when unambiguous) or PyG index 0-11.

    Raises:
        ValueError: unknown name or index; the message lists the valid names.
    """
    if isinstance(target, QM9Target):
        return target
    valid = ", ".join(TARGET_NAMES)
    if isinstance(target, int) and not isinstance(target, bool):
        if 0 <= target < len(TARGETS):
            return TARGETS[target]
        raise ValueError(f"data.target={target}: a target index must be in [0, {len(TARGETS) - 1}]"
                         f" (PyG column order: {valid})")
    if isinstance(target, str):
        if target in _BY_NAME:
            return _BY_NAME[target]
        matches = [t for t in TARGETS if t.name.lower() == target.strip().lower()]
        if len(matches) == 1:
            return matches[0]
    raise ValueError(f"data.target={target!r} is not a QM9 target; valid names: {valid} "
                     f"(case-insensitive), or a PyG column index 0-{len(TARGETS) - 1}")
