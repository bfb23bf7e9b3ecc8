"""QM9 without the network: PyG's QM9 tensors rebuilt from the ``qm9pack`` wheel's CSV files.

``qm9pack`` 1.0.3 (PyPI, MIT, by QM9's first author; ``pip install -e ".[qm9pack]"``) ships all
130,831 molecules of PyG's QM9, in PyG's order (``idx = gdb − 1``), as ``qm9_part{1,2,3}.csv``.
:func:`build_qm9pack` turns them into PyG's processed layout (``processed/data_v3.pt``), so
:func:`~ace.data.qm9.files.load_processed` and everything downstream (splits, standardisation,
the 12 targets, meV reporting) are unchanged. ``shared/reference/qm9_offline.md`` is the
specification; in short:

* ``y`` [N, 19]: PyG's arithmetic — parse float64, cast float32, multiply by PyG's float32
  conversion tensor (Hartree → eV for homo … G, kcal/mol → eV for the atomisation energies);
  the atomisation energies are ``float('%.12g' % ((E − Σ atom references) · 627.509))`` kcal/mol
  with the Hartree references of :data:`ATOM_REFERENCES`.
* ``pos`` [n, 3]: the xyz in Å, either rounded to 4 decimals as PyG's ``gdb9.sdf`` prints them
  (``positions="pyg"``, the default) or at the CSV's full ~10 decimals (``"full"``). For the 151
  molecules with an E-notation coordinate, PyG's SDF holds wrong values (Mathematica ``*^``
  export); both conventions use the correct ones.
* ``z`` from the element symbols; ``x`` [n, 11] with PyG's one-hot H C N O F and the atomic
  number; PyG's bond-derived columns (aromatic, sp/sp2/sp3, bonded H) are 0, and there are no
  bonds (``edge_index`` [2, 0]): qm9pack has no bond data and no model here reads them.

The package is never imported (it imports ``pkg_resources``): its data folder is located with
:func:`importlib.util.find_spec`. A build is vectorised (a few seconds), happens in a staging
directory renamed into place only on success, and records its source, version, position
convention and the CSVs' SHA-256 in ``source.json``, checked on every load.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data
from torch_geometric.io import fs
from tqdm import tqdm

from ace.data.download import sha256_file
from ace.data.errors import DataIntegrityError
from ace.data.qm9.files import PROCESSED_NAME

__all__ = ["CSV_FILES", "POSITIONS", "ATOM_REFERENCES", "qm9pack_data_dir", "qm9pack_root",
           "read_csvs", "build_tensors", "build_qm9pack", "check_manifest", "MANIFEST"]

log = logging.getLogger(__name__)

CSV_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
POSITIONS = ("pyg", "full")
MANIFEST = "source.json"
INSTALL_HINT = ('install the optional wheel (~104 MB): pip install -e ".[qm9pack]" '
                "(or make install-qm9pack), or point data.qm9pack_dir at a folder holding "
                + ", ".join(CSV_FILES))

HAR2EV = 27.211386246       # PyG's constants (torch_geometric/datasets/qm9.py)
KCALMOL2EV = 0.04336414
HARTREE_TO_KCALMOL = 627.509
#: qm9pack column of each PyG ``y`` column 0-11 and 16-18, and PyG's conversion factor
Y_SOURCES = {
    0: ("Dipole_debye", 1.0), 1: ("Polarizability_bohr3", 1.0), 2: ("HOMO_au", HAR2EV),
    3: ("LUMO_au", HAR2EV), 4: ("HOMO_LUMO_gap_au", HAR2EV), 5: ("R2_bohr2", 1.0),
    6: ("ZPVE_au", HAR2EV), 7: ("InternalEnergy_0K_au", HAR2EV),
    8: ("InternalEnergy_298K_au", HAR2EV), 9: ("Enthalphy_298K_au", HAR2EV),
    10: ("GibbsFreeEnergy_298K_au", HAR2EV), 11: ("Heatcapacity_Cv_cal_mol_K", 1.0),
    16: ("RotA_GHz", 1.0), 17: ("RotB_GHz", 1.0), 18: ("RotC_GHz", 1.0),
}
#: PyG columns 12-15 (U0_atom, U_atom, H_atom, G_atom) come from the energies 7-10
ATOMIZATION = {12: 7, 13: 8, 14: 9, 15: 10}
ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: Hartree atom references for U0, U, H, G (qm9_offline.md: PyG's eV atomrefs ÷ 27.211386024367243)
ATOM_REFERENCES = {
    "H": (-0.500273, -0.498857, -0.497912, -0.510927),
    "C": (-37.846772, -37.845355, -37.844411, -37.861317),
    "N": (-54.583861, -54.582445, -54.581501, -54.598897),
    "O": (-75.064579, -75.063163, -75.062219, -75.079532),
    "F": (-99.718730, -99.717314, -99.716370, -99.733544),
}
COLUMNS = ["Index", "N_atoms", "Elements", "XYZ_Ang", *(c for c, _ in Y_SOURCES.values())]


def qm9pack_data_dir(override: str | Path | None = None) -> Path:
    """The folder with qm9pack's CSVs: ``override`` if given, else the installed wheel's."""
    if override is not None:
        folder = Path(override)
    else:
        spec = importlib.util.find_spec("qm9pack")
        if spec is None or not spec.submodule_search_locations:
            raise DataIntegrityError(f"data.source=qm9pack: the qm9pack package is not "
                                     f"installed; {INSTALL_HINT}.")
        folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [name for name in CSV_FILES if not (folder / name).is_file()]
    if missing:
        raise DataIntegrityError(f"data.source=qm9pack: {folder} lacks {', '.join(missing)}; "
                                 f"{INSTALL_HINT}.")
    return folder


def qm9pack_root(data_dir: str | Path, positions: str) -> Path:
    """Where a qm9pack build lives: beside PyG's ``data_dir``, never inside it."""
    data_dir = Path(data_dir)
    return data_dir.parent / f"{data_dir.name}_qm9pack_{positions}"


def read_csvs(folder: Path) -> pd.DataFrame:
    """The needed columns of the three CSVs, rows in file order (= gdb order = PyG order)."""
    frames = []
    for name in tqdm(CSV_FILES, desc="qm9pack CSV", disable=None, leave=False):
        try:
            frames.append(pd.read_csv(folder / name, usecols=COLUMNS))
        except (OSError, ValueError) as err:
            raise DataIntegrityError(f"{folder / name} is not a qm9pack CSV ({err}); "
                                     f"{INSTALL_HINT}.") from err
    frame = pd.concat(frames, ignore_index=True)
    if not frame["Index"].is_monotonic_increasing or frame["Index"].duplicated().any():
        raise DataIntegrityError(f"{folder}: the Index column is not strictly increasing "
                                 f"(qm9pack lists molecules in gdb order)")
    return frame


def _flat(strings: pd.Series) -> list[str]:
    """Every item of a column of Python-list strings (``"['C','H']"``, ``"[[1.0,2.0],[...]]"``)."""
    joined = ",".join(strings.str.replace(r"[\[\]' ]", "", regex=True))
    return joined.split(",")


def round_like_printf(values: np.ndarray, decimals: int = 4) -> np.ndarray:
    """``float('%.{decimals}f' % v)`` for every value (how gdb9.sdf printed the coordinates),
    vectorised: ``np.round`` everywhere, then exact formatting where ``np.round``'s scaled
    product may land on the other side of a tie."""
    out = np.round(values, decimals)
    scaled = values * 10.0**decimals
    near_tie = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < 1e-6
    out[near_tie] = [float(f"{v:.{decimals}f}") for v in values[near_tie]]
    return out


def build_tensors(frame: pd.DataFrame, positions: str = "pyg") -> dict[str, torch.Tensor]:
    """PyG's collated QM9 tensors from qm9pack rows: x, z, pos, y, idx and the atom pointer."""
    if positions not in POSITIONS:
        raise ValueError(f"data.positions={positions!r} must be one of {list(POSITIONS)}")
    counts = frame["N_atoms"].to_numpy(np.int64)
    symbols = np.array(_flat(frame["Elements"]))
    xyz = np.array(_flat(frame["XYZ_Ang"]), dtype=np.float64).reshape(-1, 3)
    if len(symbols) != counts.sum() or len(xyz) != counts.sum():
        raise DataIntegrityError(f"qm9pack: {len(symbols)} element symbols and {len(xyz)} "
                                 f"coordinates for {counts.sum()} atoms (N_atoms)")
    unknown = set(np.unique(symbols)) - set(ELEMENTS)
    if unknown:
        raise DataIntegrityError(f"qm9pack: unknown element symbols {sorted(unknown)}")
    if positions == "pyg":
        xyz = round_like_printf(xyz, 4)
    z = np.zeros(len(symbols), np.int64)
    onehot = np.zeros((len(symbols), 11), np.float32)
    for k, element in enumerate(ELEMENTS):
        mask = symbols == element
        z[mask] = ATOMIC_NUMBER[element]
        onehot[mask, k] = 1.0
    onehot[:, 5] = z

    n = len(frame)
    y = np.zeros((n, 19), np.float32)
    conversion = np.zeros(19, np.float32)
    for column, (name, factor) in Y_SOURCES.items():
        y[:, column] = frame[name].to_numpy(np.float64).astype(np.float32)
        conversion[column] = factor
    # atomisation energies: E − Σ references per molecule (Hartree) → kcal/mol with %.12g
    molecule = np.repeat(np.arange(n), counts)
    ref_table = np.array([ATOM_REFERENCES[e] for e in ELEMENTS])        # [5, 4]
    element_index = np.select([symbols == e for e in ELEMENTS], range(len(ELEMENTS)))
    ref_sum = np.zeros((n, 4))
    np.add.at(ref_sum, molecule, ref_table[element_index])
    for column, energy_column in ATOMIZATION.items():
        energy = frame[Y_SOURCES[energy_column][0]].to_numpy(np.float64)
        kcal = (energy - ref_sum[:, column - 12]) * HARTREE_TO_KCALMOL
        y[:, column] = np.array([f"{v:.12g}" for v in kcal], dtype=np.float64).astype(np.float32)
        conversion[column] = KCALMOL2EV
    y = torch.from_numpy(y) * torch.from_numpy(conversion).view(1, -1)  # float32, as PyG
    ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
    return {"x": torch.from_numpy(onehot), "z": torch.from_numpy(z),
            "pos": torch.from_numpy(xyz.astype(np.float32)), "y": y,
            "idx": torch.from_numpy(frame["Index"].to_numpy(np.int64) - 1), "ptr": ptr}


def _save_processed(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write the tensors in PyG's InMemoryDataset layout ``(data dict, slices, Data)``."""
    n = tensors["y"].shape[0]
    ptr = tensors["ptr"]
    per_molecule = torch.arange(n + 1)
    data = Data(x=tensors["x"], z=tensors["z"], pos=tensors["pos"], y=tensors["y"],
                idx=tensors["idx"], edge_index=torch.zeros(2, 0, dtype=torch.long),
                edge_attr=torch.zeros(0, 4))
    slices = {"x": ptr, "z": ptr, "pos": ptr, "y": per_molecule, "idx": per_molecule,
              "edge_index": torch.zeros(n + 1, dtype=torch.long),
              "edge_attr": torch.zeros(n + 1, dtype=torch.long)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fs.torch_save((data.to_dict(), slices, Data), str(path))


def _version() -> str | None:
    try:
        return importlib.metadata.version("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        return None


def build_qm9pack(root: str | Path, positions: str = "pyg",
                  csv_dir: str | Path | None = None) -> Path:
    """Build ``root/processed/data_v3.pt`` and ``root/source.json`` from qm9pack's CSVs, unless
    ``root`` already holds a build (whose manifest is then checked). Staged: on any failure
    nothing is left behind."""
    root = Path(root)
    if (root / "processed" / PROCESSED_NAME).is_file():
        check_manifest(root, positions)
        return root
    if root.exists() and any(root.iterdir()):
        raise DataIntegrityError(f"{root} exists but holds no qm9pack build (interrupted?); "
                                 f"delete it and re-run.")
    folder = qm9pack_data_dir(csv_dir)
    staging = root.parent / f"{root.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    started = time.perf_counter()
    log.warning("Building QM9 from qm9pack (%s, positions=%s) into %s", folder, positions, root)
    try:
        frame = read_csvs(folder)
        tensors = build_tensors(frame, positions)
        _save_processed(tensors, staging / "processed" / PROCESSED_NAME)
        manifest = {
            "source": "qm9pack", "version": _version() if csv_dir is None else None,
            "csv_dir": str(folder), "positions": positions, "molecules": len(frame),
            "atoms": int(tensors["ptr"][-1]),
            "csv_sha256": {name: sha256_file(folder / name) for name in CSV_FILES},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if root.exists():
            root.rmdir()
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.warning("QM9 from qm9pack ready at %s: %d molecules in %.1f s", root, len(frame),
                time.perf_counter() - started)
    return root


def check_manifest(root: Path, positions: str) -> dict:
    """The build's ``source.json``; a missing file or another position convention is an error."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataIntegrityError(f"{path} is missing or unreadable ({err}): {root} is not a "
                                 f"qm9pack build. Delete {root} and re-run.") from err
    if manifest.get("source") != "qm9pack" or manifest.get("positions") != positions:
        raise DataIntegrityError(
            f"{path}: built from {manifest.get('source')} with positions="
            f"{manifest.get('positions')}, but data.positions={positions} was asked for. "
            f"Delete {root} and re-run.")
    return manifest
