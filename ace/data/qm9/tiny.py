"""A tiny QM9 in PyG's real on-disk raw format, built from real QM9 molecules.

Used by the tests and by ``debug=smoke`` (``configs/debug/smoke_data/qm9.yaml``), which serves it
through the real download path: :func:`tiny_qm9_url` writes the archive and returns its
``file://`` URL for ``data.url``.

PyG's rdkit-free QM9 downloads ``qm9_v3.zip``, whose top level holds ``qm9_v3.pt``:
``torch.save`` of a list of per-molecule dicts (``ecosystem_notes.md`` §1.3) with

* ``x`` [N, 11] float: one-hot H/C/N/O/F, atomic number, aromatic, sp, sp2, sp3, number of
  bonded hydrogens (as PyG's rdkit ``process`` computes them);
* ``z`` [N] long, ``pos`` [N, 3] float (Å);
* ``edge_index`` [2, E] long: bonds in both directions, sorted by ``src * N + dst``;
* ``edge_attr`` [E, 4] float: one-hot bond type (single, double, triple, aromatic);
* ``y`` [1, 19] float: mu, alpha, homo, lumo, gap, r2, zpve, U0, U, H, G, cv, U0_atom, U_atom,
  H_atom, G_atom, A, B, C, converted to PyG units (Hartree → eV for homo … G, kcal/mol → eV for
  the atomisation energies);
* ``name`` (``"gdb_1"``) and ``idx`` (int).

The molecules are gdb_1 (methane), gdb_2 (ammonia) and gdb_3 (water) with their published
dsgdb9nsd ``.xyz`` properties. Acetylene (gdb_4) is left out: its ⟨R²⟩ is not recorded here.
To give split code enough records, :func:`write_tiny_qm9` adds copies moved by a random proper
rotation and a translation; every property is an invariant scalar, so the copies are still correct
QM9 records.

Caveat: PyG reads ``gdb9.sdf`` with ``sanitize=False``, under which rdkit may leave the
hybridisation unset (pyg-team/pytorch_geometric#2163, #8370); the fixture uses the chemical
hybridisation of the heavy atoms (all sp3 here). No model reads these columns.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch

from ace.core.equivariance import random_rotations

__all__ = ["HAR2EV", "KCALMOL2EV", "MOLECULES", "Y_COLUMNS", "pyg_y", "tiny_qm9_records",
           "write_tiny_qm9", "make_qm9_zip", "tiny_qm9_url"]

HAR2EV = 27.211386246
KCALMOL2EV = 0.04336414

#: PyG's column order of ``y``
Y_COLUMNS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
             "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C")
_HARTREE = {"homo", "lumo", "gap", "zpve", "U0", "U", "H", "G"}
_KCALMOL = {"U0_atom", "U_atom", "H_atom", "G_atom"}

_ELEMENTS = {"H": (0, 1), "C": (1, 6), "N": (2, 7), "O": (3, 8), "F": (4, 9)}  # one-hot slot, Z

#: Real QM9 records (dsgdb9nsd .xyz units: Hartree, kcal/mol for *_atom, GHz, D, a0^n, cal/mol/K).
MOLECULES: list[dict] = [
    {
        "name": "gdb_1", "idx": 0,
        "atoms": [("C", (-0.0126981359, 1.0858041578, 0.0080009958)),
                  ("H", (0.002150416, -0.0060313176, 0.0019761204)),
                  ("H", (1.0117308433, 1.4637511618, 0.0002765748)),
                  ("H", (-0.540815069, 1.4475266138, -0.8766437152)),
                  ("H", (-0.5238136345, 1.4379326443, 0.9063972942))],
        "bonds": [(0, 1), (0, 2), (0, 3), (0, 4)],
        "props": {"A": 157.7118, "B": 157.70997, "C": 157.70699, "mu": 0.0, "alpha": 13.21,
                  "homo": -0.3877, "lumo": 0.1171, "gap": 0.5048, "r2": 35.3641,
                  "zpve": 0.044749, "U0": -40.47893, "U": -40.476062, "H": -40.475117,
                  "G": -40.498597, "cv": 6.469, "U0_atom": -395.999595, "U_atom": -398.643290,
                  "H_atom": -401.014647, "G_atom": -372.471772},
    },
    {
        "name": "gdb_2", "idx": 1,
        "atoms": [("N", (-0.0404260543, 1.0241077531, 0.0625637998)),
                  ("H", (0.0172574639, 0.0125452063, -0.0273771593)),
                  ("H", (0.9157893661, 1.3587451948, -0.0287577581)),
                  ("H", (-0.5202777357, 1.3435321258, -0.7755426124))],
        "bonds": [(0, 1), (0, 2), (0, 3)],
        "props": {"A": 293.60975, "B": 293.54111, "C": 191.39397, "mu": 1.6256, "alpha": 9.46,
                  "homo": -0.257, "lumo": 0.0829, "gap": 0.3399, "r2": 26.1563,
                  "zpve": 0.034358, "U0": -56.525887, "U": -56.523026, "H": -56.522082,
                  "G": -56.544961, "cv": 6.316, "U0_atom": -276.861363, "U_atom": -278.620271,
                  "H_atom": -280.399259, "G_atom": -259.338802},
    },
    {
        "name": "gdb_3", "idx": 2,
        "atoms": [("O", (-0.0343604951, 0.9775395708, 0.0076015923)),
                  ("H", (0.0647664923, 0.0205721989, 0.0015346341)),
                  ("H", (0.8717903737, 1.3007924048, 0.0006931336))],
        "bonds": [(0, 1), (0, 2)],
        "props": {"A": 799.58812, "B": 437.90386, "C": 282.94545, "mu": 1.8511, "alpha": 6.31,
                  "homo": -0.2928, "lumo": 0.0687, "gap": 0.3615, "r2": 19.0002,
                  "zpve": 0.021375, "U0": -76.404702, "U": -76.401867, "H": -76.400922,
                  "G": -76.422349, "cv": 6.002, "U0_atom": -213.087624, "U_atom": -213.974294,
                  "H_atom": -215.159658, "G_atom": -201.407171},
    },
]


def pyg_y(props: dict) -> torch.Tensor:
    """[1, 19] float32 in PyG's order and units."""
    values = []
    for col in Y_COLUMNS:
        v = float(props[col])
        values.append(v * HAR2EV if col in _HARTREE else v * KCALMOL2EV if col in _KCALMOL else v)
    return torch.tensor([values], dtype=torch.float32)


def _graph(mol: dict) -> dict[str, torch.Tensor]:
    """x, z, edge_index, edge_attr of a molecule (single bonds, sp3 heavy atoms)."""
    symbols = [s for s, _ in mol["atoms"]]
    n = len(symbols)
    rows, cols = [], []
    for a, b in mol["bonds"]:
        rows += [a, b]
        cols += [b, a]
    edge_index = torch.tensor([rows, cols], dtype=torch.long)
    edge_index = edge_index[:, (edge_index[0] * n + edge_index[1]).argsort()]
    edge_attr = torch.zeros(edge_index.shape[1], 4)
    edge_attr[:, 0] = 1.0  # every bond here is single
    z = torch.tensor([_ELEMENTS[s][1] for s in symbols], dtype=torch.long)
    x = torch.zeros(n, 11)
    for i, s in enumerate(symbols):
        x[i, _ELEMENTS[s][0]] = 1.0
        x[i, 5] = float(_ELEMENTS[s][1])
        # x[i, 6] aromatic = 0; hybridisation sp / sp2 / sp3 = x[i, 7:10]: heavy atoms sp3
        if s != "H":
            x[i, 9] = 1.0
    src, dst = edge_index
    x[:, 10] = torch.zeros(n).index_add_(0, dst, (z[src] == 1).float())  # bonded hydrogens
    return {"x": x, "z": z, "edge_index": edge_index, "edge_attr": edge_attr}


def tiny_qm9_records(copies: int = 4, seed: int = 0) -> list[dict]:
    """The 3 real molecules, then ``copies`` rounds of rotated + translated copies of each.

    Record ``k`` has ``idx = k`` (its position in the list); copies are named ``gdb_1_r1`` …
    """
    gen = torch.Generator().manual_seed(seed)
    records = []
    for r in range(copies + 1):
        for mol in MOLECULES:
            pos = torch.tensor([p for _, p in mol["atoms"]], dtype=torch.float64)
            name = mol["name"]
            if r > 0:
                rot = random_rotations(1, gen, dtype=torch.float64)[0]
                shift = 2.0 * torch.randn(3, generator=gen, dtype=torch.float64)
                pos = pos @ rot.T + shift
                name = f"{name}_r{r}"
            records.append({**_graph(mol), "pos": pos.float(), "y": pyg_y(mol["props"]),
                            "name": name, "idx": len(records)})
    return records


def write_tiny_qm9(root: str | Path, copies: int = 4, seed: int = 0) -> list[dict]:
    """Write ``root/raw/qm9_v3.pt`` (3 · (copies + 1) records) and return the records."""
    records = tiny_qm9_records(copies, seed)
    raw = Path(root) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    torch.save(records, raw / "qm9_v3.pt")
    return records


def make_qm9_zip(path: str | Path, records: list[dict]) -> Path:
    """Write a ``qm9_v3.zip`` laid out like PyG's: ``qm9_v3.pt`` at the top level.

    Written to a temporary name and renamed into place, so concurrent writers of the same
    archive (e.g. the ranks of a DDP smoke run) never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(records, buffer)
    part = path.with_name(f"{path.name}.part-{os.getpid()}")
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("qm9_v3.pt", buffer.getvalue())
    os.replace(part, path)
    return path


def tiny_qm9_url(path: str | Path, copies: int = 19, seed: int = 0) -> str:
    """Write the tiny QM9 archive (``3 · (copies + 1)`` molecules, 60 by default) to ``path`` and
    return its ``file://`` URL, for ``data.url`` (the data module then downloads, unpacks and
    processes it exactly as PyG's real ``qm9_v3.zip``).

    ``configs/debug/smoke_data/qm9.yaml`` calls it through Hydra (``data.url._target_``), so the
    archive is written when the data module is instantiated.
    """
    return make_qm9_zip(path, tiny_qm9_records(copies, seed)).resolve().as_uri()
