"""The project's structure rules, checked on the files: import arrows, config inheritance, and
docs that state what the configs do."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from omegaconf import OmegaConf

from tests.conftest import CONFIG_DIR, ROOT, compose_cfg

# package -> packages of ace it must not import (arrows: training -> models/data -> core; utils
# at the bottom; reproduction reads results files, never the training stack)
FORBIDDEN = {
    "ace/utils": ("ace",),
    "ace/core": ("ace.data", "ace.models", "ace.training", "ace.reproduction"),
    "ace/data": ("ace.models", "ace.training", "ace.reproduction"),
    "ace/models": ("ace.data", "ace.training", "ace.reproduction"),
    "ace/reproduction": ("ace.training", "ace.data", "ace.models"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_imports_point_one_way():
    offences = []
    for folder, banned in FORBIDDEN.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in imported_modules(path):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offences == []


def test_scripts_never_import_the_tests():
    offences = [f"{p.name} imports {n}" for p in sorted((ROOT / "scripts").glob("*.py"))
                for n in imported_modules(p) if n == "tests" or n.startswith("tests.")]
    assert offences == []


def test_ace_experiments_inherit_their_vanilla_experiment():
    for path in sorted((CONFIG_DIR / "experiment").glob("*_ace*.yaml")):
        defaults = OmegaConf.load(path)["defaults"]
        parent = path.stem.split("_ace")[0]
        assert parent in defaults or f"{parent}_ace" in defaults, path.name


def test_model_configs_share_the_module_base_and_the_trainer_default_is_neutral(tmp_path):
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        if path.stem != "ace_module":
            assert OmegaConf.load(path)["defaults"][0] == "ace_module", path.name
    assert OmegaConf.load(CONFIG_DIR / "trainer" / "default.yaml")[
        "max_epochs"] != 2000  # N-body's budget belongs to the N-body experiments


def test_results_doc_states_the_nbody_evaluation_interval_the_configs_use(tmp_path):
    text = (ROOT / "docs" / "results.md").read_text()
    stated = {int(n) for n in re.findall(r"every (\d+) epochs", text)}
    cfg = compose_cfg(["experiment=nbody_segnn_ace"], tmp_path)
    assert cfg.trainer.check_val_every_n_epoch in stated
    assert "evaluated every epoch" not in text and "evaluation every epoch" not in text
