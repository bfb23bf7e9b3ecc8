"""QM9 from the qm9pack wheel's CSVs (shared/reference/qm9_offline.md), on tiny CSVs written in
qm9pack's format from real QM9 rows: methane, ammonia, water (the fixture's published values),
CF4 (gdb 184, fluorine) and N-methylpyrrole (gdb 212, an E-notation coordinate)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ace.data.errors import DataIntegrityError
from ace.data.qm9 import QM9DataModule
from ace.data.qm9.files import load_processed
from ace.data.qm9.qm9pack import CSV_FILES, MANIFEST, build_qm9pack, qm9pack_root
from ace.data.qm9.splits import cormorant_split
from ace.data.qm9.tiny import HAR2EV, KCALMOL2EV, MOLECULES

HEADER = ("XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,"
          "Harmonic_Freq_cmi,RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,"
          "HOMO_au,LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,ZPVE_au,InternalEnergy_0K_au,"
          "InternalEnergy_298K_au,Enthalphy_298K_au,GibbsFreeEnergy_298K_au,"
          "Heatcapacity_Cv_cal_mol_K")
# real rows of qm9_part1.csv (gdb 184 and 212), as the wheel prints them
CF4 = ('"dsgdb9nsd_000184.xyz",184,"FC(F)(F)F","InChI=1S/CF4/c2-1(3,4)5",5,"[0,1,0,0,4]",'
       '"[\'F\',\'C\',\'F\',\'F\',\'F\']","[[0.0010921821,0.0735451051,0.0024996288],'
       '[-0.0168887554,1.3947684349,0.009692655],[1.2227713731,1.8522134169,0.0003138912],'
       '[-0.6559701536,1.8325027456,-1.0609125843],[-0.6354026161,1.8208575876,1.0969063093]]",'
       '"[]","[]",5.71326,5.71279,5.71267,0.0003,15.93,-0.4286,0.1935,0.6221,279.3208,0.017147,'
       '-437.484875,-437.480956,-437.480011,-437.512059,12.639')
PYRROLE = ('"dsgdb9nsd_000212.xyz",212,"CN1C=CC=C1","InChI=1S/C5H7N",13,"[7,5,1,0,0]",'
           '"[\'C\',\'N\',\'C\',\'C\',\'C\',\'C\',\'H\',\'H\',\'H\',\'H\',\'H\',\'H\',\'H\']",'
           '"[[2.1997E-6,1.4462618059,0.0098312216],[-0.0395853465,-0.0001481182,0.0022628164],'
           '[-0.0102031441,-0.7914294915,-1.1197711939],[0.0424480479,-2.1071237431,-0.7205292439],'
           '[0.051416093,-2.1148079393,0.7011850782],[0.0029673515,-0.8035395846,1.1152367693],'
           '[1.027926131,1.828132226,0.0028554018],[-0.5211791052,1.8337374247,-0.8690329378],'
           '[-0.5054481987,1.8237838058,0.9020802045],[-0.0304306812,-0.3464381728,-2.1023011685],'
           '[0.0571095205,-2.9656370805,-1.3743309873],[0.0741869784,-2.9803348886,1.3454340259],'
           '[-0.0055890963,-0.3691945839,2.1026885337]]","[]","[]",8.71953,3.56689,2.57362,2.0318,'
           '55.54,-0.2006,0.0463,0.2469,510.1975,0.110002,-249.387499,-249.381908,-249.380963,'
           '-249.416542,20.193')
PROPS = ("A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G",
         "cv")


def fixture_row(mol: dict) -> str:
    symbols = [s for s, _ in mol["atoms"]]
    elements = "[" + ",".join(f"'{s}'" for s in symbols) + "]"
    xyz = "[" + ",".join("[" + ",".join(repr(c) for c in p) + "]" for _, p in mol["atoms"]) + "]"
    gdb = mol["idx"] + 1
    props = ",".join(repr(mol["props"][k]) for k in PROPS)
    return (f'"dsgdb9nsd_{gdb:06d}.xyz",{gdb},"","",{len(symbols)},"[]","{elements}","{xyz}",'
            f'"[]","[]",{props}')


def write_csvs(folder: Path, copies: int = 0) -> Path:
    """The 5 rows, then ``copies`` rounds of them under new gdb indices (1000·k + gdb)."""
    rows = [fixture_row(m) for m in MOLECULES] + [CF4, PYRROLE]
    rows += [row.replace(f"_{gdb:06d}.xyz\",{gdb},", f"_{1000 * k + gdb:06d}.xyz\",{1000 * k + gdb},")
             for k in range(1, copies + 1) for row, gdb in zip(rows, (1, 2, 3, 184, 212))]
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in zip(CSV_FILES, (rows[:2], rows[2:4], rows[4:])):
        (folder / name).write_text(HEADER + "\n" + "\n".join(part) + "\n")
    return folder


def pyg_targets(row: str) -> torch.Tensor:
    """PyG's arithmetic on the raw CSV numbers: float64 → float32 → × float32 conversion."""
    v = [float(x) for x in row.rsplit('"', 1)[1].strip(",").split(",")]
    rot, mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv = v[:3], *v[3:]
    raw = [mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv, *rot]
    factor = [1, 1, HAR2EV, HAR2EV, HAR2EV, 1, HAR2EV, HAR2EV, HAR2EV, HAR2EV, HAR2EV, 1, 1, 1, 1]
    return torch.tensor(raw, dtype=torch.float32) * torch.tensor(factor, dtype=torch.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    csv = write_csvs(tmp_path_factory.mktemp("csv"))
    out = tmp_path_factory.mktemp("built")
    return {p: build_qm9pack(out / p, p, csv) for p in ("pyg", "full")} | {"csv": csv}


def test_targets_follow_pygs_formula_and_atomisation_energies_match_qm9(built):
    data = load_processed(built["pyg"])
    y = data._data.y
    assert y.shape == (5, 19) and y.dtype == torch.float32
    rows = [fixture_row(m) for m in MOLECULES] + [CF4, PYRROLE]
    for i, row in enumerate(rows):
        expected = pyg_targets(row)
        assert torch.equal(y[i, :12], expected[:12]) and torch.equal(y[i, 16:], expected[12:])
    for i, mol in enumerate(MOLECULES):  # the published kcal/mol atomisation energies
        kcal = [mol["props"][k] for k in ("U0_atom", "U_atom", "H_atom", "G_atom")]
        expected = torch.tensor(kcal, dtype=torch.float32) * torch.tensor(KCALMOL2EV,
                                                                          dtype=torch.float32)
        assert torch.equal(y[i, 12:16], expected), mol["name"]
    assert data._data.idx.tolist() == [0, 1, 2, 183, 211]  # idx = gdb - 1


def test_positions_follow_the_chosen_convention_and_atoms_their_elements(built):
    pyg, full = load_processed(built["pyg"]), load_processed(built["full"])
    methane = [p for _, p in MOLECULES[0]["atoms"]]
    assert torch.equal(full[0].pos, torch.tensor(methane, dtype=torch.float32))
    rounded = [[float(f"{c:.4f}") for c in p] for p in methane]
    assert torch.equal(pyg[0].pos, torch.tensor(rounded, dtype=torch.float32))
    # gdb 212's E-notation coordinate 2.1997E-6: parsed, then rounded (pyg) or kept (full)
    assert pyg[4].pos[0, 0].item() == 0.0 and full[4].pos[0, 0].item() == pytest.approx(2.1997e-6)
    assert pyg[3].z.tolist() == [9, 6, 9, 9, 9] and pyg[4].z.tolist()[:2] == [6, 7]
    assert pyg[3].x[:, :5].argmax(-1).tolist() == [4, 1, 4, 4, 4]  # one-hot H C N O F
    assert torch.equal(pyg[3].x[:, 5], pyg[3].z.float())
    assert pyg[3].edge_index.shape == (2, 0)
    manifest = json.loads((built["pyg"] / MANIFEST).read_text())
    assert manifest["positions"] == "pyg" and manifest["molecules"] == 5
    assert set(manifest["csv_sha256"]) == set(CSV_FILES)


def test_the_data_module_serves_qm9pack_from_its_own_folder(tmp_path):
    csv = write_csvs(tmp_path / "csv", copies=3)  # 20 molecules: random split 16 / 2 / 2
    dm = QM9DataModule(data_dir=str(tmp_path / "qm9"), source="qm9pack", qm9pack_dir=str(csv),
                       split="random", target="cv", batch_size=4, max_eval_samples=1)
    dm.prepare_data()
    dm.setup()
    assert dm.root == qm9pack_root(tmp_path / "qm9", "pyg") == tmp_path / "qm9_qm9pack_pyg"
    assert not (tmp_path / "qm9").exists()  # never inside PyG's folder
    assert [len(dm.datasets[s]) for s in ("train", "valid", "test")] == [16, 1, 1]
    batch = next(iter(dm.train_dataloader()))
    assert batch.pos.dtype == torch.float32 and batch.y.shape[1] == 19
    other = QM9DataModule(data_dir=str(tmp_path / "qm9"), source="qm9pack", positions="full",
                          qm9pack_dir=str(csv))
    assert other.root != dm.root
    (dm.root / MANIFEST).write_text(json.dumps({"source": "qm9pack", "positions": "full"}))
    with pytest.raises(DataIntegrityError, match="data.positions=pyg"):
        QM9DataModule(data_dir=str(tmp_path / "qm9"), source="qm9pack").setup()


def test_a_bad_csv_is_one_clear_error_and_leaves_nothing(tmp_path):
    csv = write_csvs(tmp_path / "csv")
    (csv / CSV_FILES[1]).write_text("not,a,qm9pack,file\n1,2,3,4\n")
    with pytest.raises(DataIntegrityError, match="qm9_part2.csv is not a qm9pack CSV"):
        build_qm9pack(tmp_path / "out", "pyg", csv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv"]
    with pytest.raises(DataIntegrityError, match=r'pip install -e "\.\[qm9pack\]"'):
        build_qm9pack(tmp_path / "out", "pyg", tmp_path / "nowhere")


REAL = importlib.util.find_spec("qm9pack")


@pytest.mark.slow
@pytest.mark.skipif(REAL is None, reason="the optional qm9pack wheel is not installed "
                    '(pip install -e ".[qm9pack]")')
def test_the_real_wheel_is_pygs_qm9(tmp_path):
    data = load_processed(build_qm9pack(tmp_path / "qm9", "pyg"))
    assert len(data) == 130_831
    gdb = data._data.idx.numpy() + 1
    missing = np.setdiff1d(np.arange(1, 133_886), gdb)
    assert len(missing) == 3_054 and missing[:6].tolist() == [58, 61, 80, 185, 186, 245]
    assert missing[-5:].tolist() == [133858, 133860, 133864, 133865, 133866]
    split = cormorant_split(len(data))
    assert [len(split[s]) for s in ("train", "valid", "test")] == [100_000, 17_748, 13_083]
    assert (gdb[split["train"][:5].numpy()]).tolist() == [133161, 70467, 8226, 26624, 20504]
    assert data._data.pos.shape == (2_359_210, 3)
