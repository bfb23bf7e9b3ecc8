"""The GPU check (scripts/gpu_check.py, issue 17) and the device handling it relies on.

* Without CUDA the script says so in one line, exits 0 and writes nothing.
* Its report helpers: JUnit counts, ratios computed from the recorded medians.
* Slow: the whole pipeline with ``--device cpu`` (tests, one smoke run, two timed N-body runs)
  writes gpu.json with the expected keys and sane values.
* Group elements are drawn on the generator's device (the CPU) and moved to the batch, whatever
  the batch's device or torch's default device: the same elements everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys

import pytest
import torch

from ace.data.mocap import MoCapFixedHeightRotation, MoCapRotation
from ace.data.modelnet40.task import PointCloudRotation
from ace.data.nbody import NBodyRotation
from ace.reproduction.paper import TABLE3
from tests.conftest import ROOT, to_device

SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_in_one_line_and_writes_nothing(gpu_check, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    default = gpu_check.DEFAULT_OUTPUT
    before = default.stat().st_mtime_ns if default.exists() else None
    assert gpu_check.main([]) == 0
    assert gpu_check.main(["--output", str(tmp_path / "gpu.json"), "--compile"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("CUDA is not available" in line for line in lines)
    assert list(tmp_path.iterdir()) == []
    assert (default.stat().st_mtime_ns if default.exists() else None) == before


def test_junit_counts(gpu_check, tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok[cuda]"/>'
        '<testcase classname="tests.test_a" name="test_ok2[cuda]"/>'
        '<testcase classname="tests.test_a" name="test_bad[cuda]"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_b" name="test_skip[cuda]"><skipped/></testcase>'
        '</testsuite></testsuites>')
    counts = gpu_check.junit_counts(xml)
    assert {k: counts[k] for k in ("collected", "passed", "failed", "errors", "skipped")} == {
        "collected": 4, "passed": 2, "failed": 1, "errors": 0, "skipped": 1}
    assert counts["failed_ids"] == ["tests.test_a::test_bad[cuda]"]


def test_ratios_come_from_the_recorded_medians(gpu_check):
    runs = {"nbody_segnn": {"status": "ok", "median_s_per_epoch": 2.0},
            "nbody_segnn_ace": {"status": "ok", "median_s_per_epoch": 3.0},
            "nbody_segnn_compiled": {"status": "ok", "median_s_per_epoch": 1.0},
            "nbody_segnn_ace_compiled": {"status": "error", "error": "boom"}}
    out = gpu_check.summarise_timing(runs)
    assert out["ratio_ace_over_vanilla"] == 1.5
    assert "ratio_ace_over_vanilla_compiled" not in out  # never from a failed run
    assert out["paper_ratio_ace_over_vanilla"] == (TABLE3["nbody_segnn_ace"][1]
                                                   / TABLE3["nbody_segnn"][1])


@pytest.mark.slow
def test_the_whole_check_runs_on_the_cpu_and_writes_a_sane_report(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--epochs", "2", "--max-samples", "200",
         "--experiments", "nbody_segnn_ace", "--test-paths", "tests/test_homotopic.py",
         "--data-dir", str(tmp_path / "data"), "--output", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["device"] == "cpu"
    assert {"environment", "tests", "smoke", "timing", "total_s", "within_budget"} <= set(report)
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["device_name"]

    tests = report["tests"]  # the CUDA cases of tests/test_homotopic.py: skipped here
    assert tests["ok"] and tests["collected"] >= 2 and tests["failed"] == tests["errors"] == 0
    assert tests["passed"] + tests["skipped"] == tests["collected"]
    assert tests["skipped"] == (0 if torch.cuda.is_available() else tests["collected"])

    smoke = report["smoke"]
    assert smoke["ok"] == 1 and smoke["errors"] == 0
    assert smoke["runs"]["nbody_segnn_ace"]["status"] == "ok"
    assert 0 < smoke["runs"]["nbody_segnn_ace"]["seconds"] <= smoke["seconds"]

    timing = report["timing"]
    assert set(timing["runs"]) == {"nbody_segnn", "nbody_segnn_ace"}  # no --compile
    for experiment, run in timing["runs"].items():
        assert run["status"] == "ok"
        assert len(run["epoch_seconds"]) == len(run["module_epoch_seconds"]) == 2
        assert all(0 < s < run["seconds"] for s in run["epoch_seconds"])
        assert run["median_s_per_epoch"] == statistics.median(run["epoch_seconds"][1:])
        assert run["paper_s_per_epoch"] == TABLE3[experiment][1]
        assert run["ours_over_paper"] == pytest.approx(
            run["median_s_per_epoch"] / run["paper_s_per_epoch"])
    medians = {e: r["median_s_per_epoch"] for e, r in timing["runs"].items()}
    assert timing["ratio_ace_over_vanilla"] == pytest.approx(
        medians["nbody_segnn_ace"] / medians["nbody_segnn"])
    assert report["total_s"] >= smoke["seconds"] + tests["seconds"]
    assert "wrote" in proc.stdout


# ---------------------------------------------------------------------------------------------
# group elements on every device
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [NBodyRotation(), MoCapRotation(translation_std=2.0),
                                    MoCapFixedHeightRotation(), PointCloudRotation()],
                         ids=lambda a: type(a).__name__)
def test_group_elements_are_drawn_on_the_cpu_and_moved_to_the_batch(action, device):
    g = torch.Generator().manual_seed(0)
    batch = {"loc": torch.randn(4, 5, 3, generator=g), "pos": torch.randn(4, 7, 3, generator=g)}
    elements = action.sample(batch, torch.Generator().manual_seed(1))
    moved = action.sample(to_device(batch, device), torch.Generator().manual_seed(1))
    assert moved.device.type == device.type and moved.dtype == torch.float32
    assert torch.equal(moved.cpu(), elements)  # the same draw, whatever the batch's device
    with torch.device("meta"):  # nor does torch's default device change the draw
        assert torch.equal(action.sample(batch, torch.Generator().manual_seed(1)), elements)


def test_a_saved_or_copied_nbody_segnn_carries_no_graphs_of_the_device_it_ran_on(tmp_path, device):
    import copy

    from ace.models import SEGNNNBody

    torch.manual_seed(0)
    model = SEGNNNBody(hidden_features=8, num_layers=1).to(device)
    batch = {"loc": torch.randn(2, 5, 3), "vel": torch.randn(2, 5, 3),
             "charges": torch.ones(2, 5, 1)}
    out = model(to_device(batch, device))
    assert model._graph_cache  # the forward cached its graph, on its own device
    torch.save(model.cpu(), tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)
    for copied in (loaded, copy.deepcopy(model)):
        assert copied._graph_cache == {}
        assert torch.allclose(copied(batch), out.cpu(), atol=1e-5)  # graphs rebuilt on the CPU


def test_a_copied_egno_time_convolution_carries_no_bases_of_the_device_it_ran_on(device):
    import copy

    from ace.models.egno import SpectralTimeConv

    torch.manual_seed(0)
    conv = SpectralTimeConv(4, 4, num_modes=2, init_scale=0.1).to(device)
    x = torch.randn(3, 5, 4)
    out = conv(x.to(device))
    assert conv._bases  # the forward cached its DFT bases, on its own device
    copied = copy.deepcopy(conv.cpu())
    assert copied._bases == {} and conv._bases  # the copy only
    assert torch.allclose(copied(x), out.cpu(), atol=1e-6)  # bases rebuilt on the CPU
