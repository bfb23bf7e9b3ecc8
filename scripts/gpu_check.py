"""The GPU path, checked (issue 17): on a CUDA machine, in under 5 minutes, one command runs

1. **tests**: ``pytest -m cuda``, the CUDA cases of the device-parametrised tests (the ``device``
   fixture of tests/conftest.py); passed / failed / skipped counts from pytest's JUnit XML;
2. **smoke**: one short epoch of every experiment (configs/experiment/*.yaml), each
   ``python train.py experiment=<e> debug=smoke trainer=gpu trainer.max_epochs=1`` in a
   subprocess with a timeout: offline, on the tiny generated / synthetic data sets of
   ``debug=smoke`` (a dead proxy makes any network access fail); ok / error and seconds each,
   ``--jobs`` runs at a time (so a run's seconds include its share of a busy machine);
3. **timing**: N-body SEGNN vanilla (``nbody_segnn``) and ACE (``nbody_segnn_ace``) at the paper's
   settings (3000 training samples, batch 100: 30 steps) for ``--epochs`` epochs without
   validation, through ace.training.pipeline.train as scripts/bench_training.py does; the median
   seconds of epochs 1.. (epoch 0 warms up), each measured between two device synchronisations,
   against the paper's RTX A5000 figures (Table 3, ace.reproduction.paper.TABLE3: 1.368 and
   1.512 s/epoch) and the ACE / vanilla ratio. ``--compile`` adds the same two runs with
   ``model.compile=true``.

and writes everything (versions, device, results, seconds) to ``outputs/bench/gpu.json``::

    make gpu-check [ARGS="--compile"]              # = python scripts/gpu_check.py [--compile]
    python scripts/gpu_check.py --experiments nbody_segnn_ace,qm9_schnet --skip-tests

The timing runs generate their own N-body set once (3000 / 10 / 10 simulations under
``--data-dir``/nbody/, about 30 s on one CPU core; validation and test are never run): the
reference set's shapes and steps without its 14,000 simulations.

Without CUDA the command prints one line and exits 0, writing nothing. ``--device cpu`` runs the
same pipeline on the CPU (default output outputs/bench/gpu_check_cpu.json), with small budgets a
dry run that tests/test_gpu_check.py makes::

    python scripts/gpu_check.py --device cpu --epochs 2 --max-samples 200 \\
        --experiments nbody_segnn_ace --test-paths tests/test_homotopic.py --output /tmp/gpu.json

Exit status 1 when a test, a smoke run or a timing run failed (the JSON is written first).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # bench_common
os.environ.setdefault("ACE_ROOT", str(ROOT))

import torch  # noqa: E402

from ace.utils.console import quiet_third_party  # noqa: E402

quiet_third_party()  # before Lightning is imported, as train.py

from lightning.pytorch import Callback  # noqa: E402

from ace.reproduction.paper import TABLE3  # noqa: E402

DEFAULT_OUTPUT = ROOT / "outputs" / "bench" / "gpu.json"
#: --device cpu writes here by default: a dry run never replaces the GPU's numbers
DEFAULT_CPU_OUTPUT = ROOT / "outputs" / "bench" / "gpu_check_cpu.json"
TIMED = ("nbody_segnn", "nbody_segnn_ace")
#: the environment of every subprocess: no W&B, and a dead proxy so that any download fails fast
OFFLINE_ENV = {"WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore",
               **{k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                     "https_proxy", "ALL_PROXY")}}


def log(message: str) -> None:
    print(f"[gpu_check] {message}", flush=True)


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_PROXY", "no_proxy")}
    return {**env, **OFFLINE_ENV, "ACE_ROOT": str(ROOT)}


def all_experiments() -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


def accelerator(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


# ------------------------------------------------------------------------------- environment
def environment(device: str) -> dict:
    import e3nn
    import lightning

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "lightning": lightning.__version__,
        "e3nn": e3nn.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "git_commit": commit,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update({
            "device_name": torch.cuda.get_device_name(0),
            "device_count": torch.cuda.device_count(),
            "compute_capability": f"{props.major}.{props.minor}",
            "device_memory_gib": round(props.total_memory / 2**30, 1),
            "cudnn": torch.backends.cudnn.version(),
        })
    else:
        env["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    return env


# ------------------------------------------------------------------------------------ tests
def junit_counts(path: Path) -> dict:
    """Passed / failed / errors / skipped and the failed test ids from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites)
              for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {
        "collected": counts["tests"],
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "failed_ids": failed,
    }


def run_tests(paths: list[str], timeout_s: float, tmp: Path) -> dict:
    xml = tmp / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *paths]
    command = " ".join(["pytest -m cuda", *paths])
    log(f"tests: {command}")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True,
                              text=True, timeout=timeout_s)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as err:
        rc, tail = None, f"timed out after {timeout_s} s: {str(err.stdout or '')[-2000:]}"
    out = {"command": command, "returncode": rc,
           "seconds": round(time.perf_counter() - t0, 2)}
    if xml.exists():
        out.update(junit_counts(xml))
    # 0: all passed; 5: nothing selected (no device-parametrised test in these paths)
    out["ok"] = rc in (0, 5) and not out.get("failed") and not out.get("errors")
    if not out["ok"]:
        out["output_tail"] = tail
    log(f"tests: {out.get('passed', 0)} passed, {out.get('failed', 0)} failed, "
        f"{out.get('errors', 0)} errors, {out.get('skipped', 0)} skipped "
        f"in {out['seconds']:.1f} s")
    return out


# ------------------------------------------------------------------------------------ smoke
def smoke_one(experiment: str, device: str, timeout_s: float, threads: int, tmp: Path) -> dict:
    """One ``debug=smoke`` epoch of ``experiment`` through train.py, in its own directories."""
    work = tmp / experiment
    cmd = [sys.executable, str(ROOT / "train.py"), f"experiment={experiment}", "debug=smoke",
           f"trainer={accelerator(device)}", f"trainer.accelerator={accelerator(device)}",
           "trainer.devices=1", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
           f"num_threads={threads}", f"paths.data_dir={work / 'data'}",
           f"paths.log_dir={work / 'out'}"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=work.parent, env=subprocess_env(), capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - t0, 2),
                "error": f"no result after {timeout_s} s"}
    seconds = round(time.perf_counter() - t0, 2)
    results = sorted((work / "out").glob(f"{experiment}/*/results.json"))
    status = "error"
    if proc.returncode == 0 and results:
        status = json.loads(results[-1].read_text()).get("status")
        status = "ok" if status == "completed" else f"error (results.json status {status!r})"
    out = {"status": status, "seconds": seconds, "returncode": proc.returncode}
    if status != "ok":
        out["error"] = proc.stderr[-2000:] or proc.stdout[-2000:]
    return out


def run_smoke(experiments: list[str], device: str, jobs: int, timeout_s: float,
              tmp: Path) -> dict:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(f"smoke: {len(experiments)} experiments, debug=smoke trainer={accelerator(device)} "
        f"trainer.max_epochs=1, {jobs} at a time, {threads} threads each")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {e: pool.submit(smoke_one, e, device, timeout_s, threads, tmp)
                   for e in experiments}
        runs = {}
        for e, future in futures.items():
            runs[e] = future.result()
            log(f"smoke: {e:36s} {runs[e]['status']:8s} {runs[e]['seconds']:6.1f} s")
    ok = sum(r["status"] == "ok" for r in runs.values())
    return {"overrides": f"debug=smoke trainer={accelerator(device)} trainer.max_epochs=1",
            "jobs": jobs, "threads_per_run": threads, "timeout_s": timeout_s,
            "seconds": round(time.perf_counter() - t0, 2), "ok": ok, "errors": len(runs) - ok,
            "runs": runs}


# ----------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SyncedEpochTimer(Callback):
    """Logs ``time/train_epoch_synced_s``: the seconds from the start of each training epoch to
    the end of its last step, both after a device synchronisation. The module's own
    ``time/train_epoch_s`` ends when the last step is *queued*, which on a GPU can be before it
    ran. Like it, this leaves out the validation of the last epoch and the epoch-end hooks."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self._t0 = self._t1 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's last step only
            synchronize(pl_module.device)
            self._t1 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("time/train_epoch_synced_s", self._t1 - self._t0)


def epoch_seconds(experiment: str, device: str, compile_model: bool, epochs: int,
                  max_samples: int, batch_size: int, data_dir: Path,
                  out: Path) -> dict[str, list[float]]:
    """Seconds of every training epoch of one run without validation (bench_training.py's
    protocol): ``synced`` (:class:`SyncedEpochTimer`) and ``module`` (``time/train_epoch_s``)."""
    from bench_common import train_in_process  # after quiet_third_party, as every import here

    overrides = [
        f"experiment={experiment}",
        f"trainer={accelerator(device)}", f"trainer.accelerator={accelerator(device)}",
        "trainer.devices=1",
        f"trainer.max_epochs={epochs}",
        "trainer.check_val_every_n_epoch=100000",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        "callbacks=none",
        "logger=csv",
        "test=false",
        f"model.compile={str(compile_model).lower()}",
        f"paths.data_dir={data_dir}",
        f"data.num_train={max_samples}", f"data.max_samples={max_samples}",
        "data.num_valid=10", "data.num_test=10",  # generated, never used
        f"data.batch_size={batch_size}",
    ]
    frame = train_in_process(overrides, out, callbacks={
        "synced_epoch_timer": {"_target_": "scripts.gpu_check.SyncedEpochTimer"}})
    return {"synced": frame["time/train_epoch_synced_s"].dropna().tolist(),
            "module": frame["time/train_epoch_s"].dropna().tolist()}


def summarise_timing(runs: dict) -> dict:
    """Ratios from the recorded medians: ACE / vanilla (eager and compiled) and the paper's."""
    paper = {e: TABLE3[e][1] for e in TIMED}
    out: dict = {"paper_ratio_ace_over_vanilla": paper["nbody_segnn_ace"] / paper["nbody_segnn"]}
    for suffix in ("", "_compiled"):
        vanilla, ace = runs.get(f"nbody_segnn{suffix}"), runs.get(f"nbody_segnn_ace{suffix}")
        if vanilla and ace and vanilla.get("status") == ace.get("status") == "ok":
            out[f"ratio_ace_over_vanilla{suffix}"] = (ace["median_s_per_epoch"]
                                                     / vanilla["median_s_per_epoch"])
    return out


def run_timing(device: str, epochs: int, max_samples: int, batch_size: int, with_compile: bool,
               data_dir: Path, tmp: Path) -> dict:
    steps = max_samples // batch_size
    report: dict = {
        "protocol": (f"{max_samples} training samples, batch {batch_size} ({steps} steps), "
                     f"{epochs} epochs without validation; median seconds of epochs "
                     f"1..{epochs - 1}"),
        "data_dir": str(data_dir),
        "paper": "Table 3, RTX A5000 (ace.reproduction.paper.TABLE3), train s/epoch",
        "epoch_seconds": "epoch start to the end of its last step, both after a device "
                         "synchronisation (module_epoch_seconds: the module's own "
                         "time/train_epoch_s, which does not wait for queued GPU work)",
        "runs": {},
    }
    for compile_model in (False, True) if with_compile else (False,):
        for experiment in TIMED:
            key = experiment + ("_compiled" if compile_model else "")
            paper = TABLE3[experiment][1]
            t0 = time.perf_counter()
            try:
                seconds = epoch_seconds(experiment, device, compile_model, epochs, max_samples,
                                        batch_size, data_dir, tmp / key)
            except Exception as err:  # recorded, the other runs go on
                report["runs"][key] = {"status": "error", "error": f"{type(err).__name__}: {err}",
                                       "seconds": round(time.perf_counter() - t0, 2)}
                log(f"timing: {key} failed: {type(err).__name__}: {err}")
                continue
            times = seconds["synced"]
            median = statistics.median(times[1:] if len(times) > 1 else times)
            report["runs"][key] = {
                "status": "ok",
                "compile": compile_model,
                "epoch_seconds": times,
                "module_epoch_seconds": seconds["module"],
                "median_s_per_epoch": median,
                "paper_s_per_epoch": paper,
                "ours_over_paper": median / paper,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            log(f"timing: {key:26s} {median:7.3f} s/epoch (paper, RTX A5000: {paper} s)")
    report.update(summarise_timing(report["runs"]))
    if "ratio_ace_over_vanilla" in report:
        log(f"timing: ACE / vanilla {report['ratio_ace_over_vanilla']:.3f} "
            f"(paper {report['paper_ratio_ace_over_vanilla']:.3f})")
    return report


# ------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The GPU path, checked: CUDA tests, one smoke epoch of every experiment, "
                    "N-body SEGNN s/epoch against Table 3; writes outputs/bench/gpu.json.")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: the same pipeline on the CPU (a dry run with small budgets)")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: outputs/bench/gpu.json (--device cpu: gpu_check_cpu.json)")
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per run (>= 2)")
    parser.add_argument("--max-samples", type=int, default=3000, help="N-body training samples")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--compile", action="store_true", help="also time model.compile=true")
    parser.add_argument("--experiments", default="all",
                        help="comma-separated smoke experiments (default: every one)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="smoke runs at a time (default: 4 on CUDA, 1 on the CPU)")
    parser.add_argument("--smoke-timeout-s", type=float, default=300.0)
    parser.add_argument("--test-paths", default="tests",
                        help="comma-separated pytest paths, relative to the repository root")
    parser.add_argument("--test-timeout-s", type=float, default=240.0)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data",
                        help="where the timing runs keep their generated N-body set")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="the time the whole check should fit in (recorded, not enforced)")
    for step in ("tests", "smoke", "timing"):
        parser.add_argument(f"--skip-{step}", action="store_true")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (epoch 0 is excluded from the median)")
    if args.max_samples < args.batch_size:
        parser.error("--max-samples must be at least --batch-size (one step per epoch)")
    if args.output is None:
        args.output = DEFAULT_OUTPUT if args.device == "cuda" else DEFAULT_CPU_OUTPUT
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda}): nothing checked, nothing written "
              f"(--device cpu runs the CPU dry run).")
        return 0
    experiments = all_experiments() if args.experiments == "all" else [
        e.strip() for e in args.experiments.split(",") if e.strip()]
    unknown = sorted(set(experiments) - set(all_experiments()))
    if unknown:
        print(f"gpu_check: unknown experiments {unknown}; available: {all_experiments()}",
              file=sys.stderr)
        return 2
    jobs = args.jobs or (4 if args.device == "cuda" else 1)
    started = time.perf_counter()
    report: dict = {
        "script": "scripts/gpu_check.py",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "environment": environment(args.device),
        "budget_s": args.budget_s,
    }
    log(f"{report['environment']['device_name']}, torch {torch.__version__}, "
        f"CUDA build {torch.version.cuda}")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        if not args.skip_tests:
            report["tests"] = run_tests([p for p in args.test_paths.split(",") if p],
                                        args.test_timeout_s, tmp)
        if not args.skip_smoke:
            (tmp / "smoke").mkdir()
            report["smoke"] = run_smoke(experiments, args.device, jobs, args.smoke_timeout_s,
                                        tmp / "smoke")
        if not args.skip_timing:
            # last: the smoke runs are over, the device is quiet
            report["timing"] = run_timing(args.device, args.epochs, args.max_samples,
                                          args.batch_size, args.compile, args.data_dir.resolve(),
                                          tmp / "timing")
    report["total_s"] = round(time.perf_counter() - started, 2)
    report["within_budget"] = report["total_s"] <= args.budget_s
    failures = []
    if "tests" in report and not report["tests"]["ok"]:
        failures.append("tests")
    if report.get("smoke", {}).get("errors"):
        failures.append("smoke")
    if any(r["status"] != "ok" for r in report.get("timing", {}).get("runs", {}).values()):
        failures.append("timing")
    report["ok"] = not failures
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    log(f"{'ok' if not failures else 'FAILED: ' + ', '.join(failures)} in "
        f"{report['total_s']:.0f} s (budget {args.budget_s:.0f} s); wrote {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
