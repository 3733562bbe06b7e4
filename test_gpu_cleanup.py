#!/usr/bin/env python
"""Does the GPU come back after a trial that leaks? ``python test_gpu_cleanup.py``

The incident's own test (README, "Background") allocated and freed memory inside one process and
called ``empty_cache()``: it could not see what actually broke the sweep, memory held by
processes that outlive a trial. This one runs real trials as subprocesses, through the
orchestrator's own code (``RunningTrial``: launch, monitor, whole-tree stop, gc, the
adaptive wait), and then checks from outside, with NVML:

0. ``context_only``: creates the CUDA context and allocates nothing, the reference that
   tells the context (hundreds of MB per process, freed only at exit) from an allocation.
1. ``exit_without_free`` 150 and 200 MB (the incident's test's sizes): allocate on the GPU,
   keep it, exit without freeing anything (no ``del``, no ``empty_cache``, no atexit).
2. ``leak_global_and_worker`` 150 MB: a tensor leaked in a global, plus a DataLoader worker
   stuck in user code (holding host memory) that outlives the trial's main process.

Pass means, after every trial: the device is back within ``--tolerance-mb`` of the baseline
measured before the first trial, and no process of the trial remains (so none holds host
memory); system memory in use is also compared with its level before the trial, coarsely
(``--host-tolerance-mb``, 1 GB: freed pages come back lazily, by a few hundred MB on a VM).
It prints a table (the tree's RSS peak; on a GPU the device's baseline, peak, after and
residual; without one the machine's memory in use before and after; wait, processes killed
and left). ``GPU after`` is read here, independently of the orchestrator's record. Without
a GPU the same trials allocate host memory, the process and host-memory checks run, and it
says that the GPU part was skipped.

Exit status: 0 pass, 1 fail. Kept out of pytest's collection (``testpaths = tests``).
The orchestrator side never imports torch; only the trial children do.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)

TRIALS = [("context_only", 0), ("exit_without_free", 150), ("exit_without_free", 200),
          ("leak_global_and_worker", 150)]
_MB = 1024 * 1024
SIM_CONTEXT_MB = 300  # the simulated CUDA context (a real one is 300-500 MB)


# -- the trial children (run as subprocesses; the only code here that imports torch) ---------
def child(mode: str, mb: int) -> None:
    """Allocate ``mb`` MB (GPU if there is one, else host), report, exit without freeing."""
    import torch

    from gpusweep import trial

    if mode == "warmup":  # loads torch and the DataLoader's modules into the page cache
        from torch.utils.data import DataLoader  # noqa: F401

        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if os.environ.get("GPUSWEEP_SIMNVML") and device == "cpu":
        simulate_cuda(mb)
    leaked = torch.empty(mb * _MB, dtype=torch.uint8, device=device)  # 0 MB: the context only
    leaked.fill_(1)  # touch every page: host memory counts only once written
    globals()["LEAKED"] = leaked
    if mode == "leak_global_and_worker":
        start_stuck_worker(mb)
    trial.report(step=0, allocated_mb=float(mb))
    print(f"{mode}: holding {mb} MB on {device}; exiting without freeing", flush=True)
    time.sleep(0.5)  # long enough for the monitor (10 Hz) to see the peak
    os._exit(0)  # no atexit, no finally: whatever is held is left to the orchestrator


def simulate_cuda(mb: int) -> None:
    """SIMULATED GPU (tests/simnvml, selected by GPUSWEEP_NVML_MODULE=simnvml): a context
    of SIM_CONTEXT_MB plus the allocation, so CI runs this script's GPU checks on a CPU."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from simnvml import holder

    holder.hold(SIM_CONTEXT_MB + mb)


def start_stuck_worker(mb: int) -> None:
    """A DataLoader worker stuck in ``__getitem__`` with ``mb`` MB of host memory: it never
    reaches its parent-alive check, so it outlives the trial (PyTorch FAQ: memory not
    freed after quitting = a python process still alive)."""
    from torch.utils.data import DataLoader, Dataset

    class Stuck(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> int:
            ballast = bytearray(mb * _MB)
            ballast[::4096] = b"\x01" * len(ballast[::4096])
            while True:
                time.sleep(1)

    globals()["LOADER_ITER"] = iter(DataLoader(Stuck(), num_workers=1))
    time.sleep(1.0)  # let the worker start and fill its ballast


# -- the orchestrator side -------------------------------------------------------------------
def host_used_mb() -> float:
    import psutil

    memory = psutil.virtual_memory()
    return (memory.total - memory.available) / _MB


def rss_mb(processes: list) -> float:
    """Host memory still held by these processes (0 when they are all gone)."""
    import psutil

    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / _MB


def run_one(mode: str, mb: int, workdir: str, device, baseline_mb, args) -> dict:
    from gpusweep.cleanup import find_trial_processes
    from gpusweep.config import parse_sweep
    from gpusweep.session import new_id
    from gpusweep.status import StopReason
    from gpusweep.trialrun import Placement, RunningTrial, SweepContext, TrialPlan

    spec = parse_sweep({
        "program": os.path.abspath(__file__), "method": "grid",
        "command": ["${interpreter}", "${program}", "--child", "${args}"],
        "parameters": {"mode": {"value": mode}, "mb": {"value": mb}},
        "isolation": {"timeout_s": 120, "stop": {"grace_s": 5},
                      "wait": {"tolerance_mb": args.tolerance_mb, "max_s": args.max_wait_s}},
    }, "test_gpu_cleanup.py")
    environ = dict(os.environ, WANDB_MODE="disabled",
                   PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH"))
                                              if p))
    host_before = host_used_mb()
    trial = RunningTrial(TrialPlan(new_id(), {"mode": mode, "mb": mb}),
                         SweepContext(spec, "gpu-cleanup-test", workdir, project=None),
                         Placement(device))
    trial.start(environ)
    while not trial.exited(0.1):
        trial.read_events()
        if trial.timed_out():
            trial.request_stop(StopReason.TIMEOUT)
            break
    record = trial.finish(baseline_mb)
    left = find_trial_processes(trial.pid, trial.token, trial.monitor.seen)
    host_after = host_used_mb()
    return {"run": record.run, "mode": mode, "mb": mb, "record": record,
            "left": [p.pid for p in left], "held_mb": rss_mb(left), "host_before": host_before,
            "host_after": host_after, "device_after": device.used_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--mb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tolerance-mb", type=float, default=256.0,
                        help="GPU: how far above its baseline the device may stay (MB)")
    parser.add_argument("--host-tolerance-mb", type=float, default=1024.0,
                        help="host: how much more system memory may be in use after (MB); "
                        "coarse, as the kernel gives freed pages back lazily")
    parser.add_argument("--max-wait-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.child:
        child(args.mode, args.mb)
        return 0

    from gpusweep.errors import BadInput
    from gpusweep.gpu.visible import default_device

    try:
        device = default_device()
    except BadInput as exc:  # GPUSWEEP_NVML_MODULE that cannot be imported
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"device: {device.info.name}" + ("" if device.is_gpu else
                                           " (no GPU: the GPU part is skipped; trials "
                                           "allocate host memory instead)"))
    results = []
    with tempfile.TemporaryDirectory(prefix="gpusweep-cleanup-") as workdir:
        # An unjudged first trial: the page cache then already holds torch's libraries, so
        # that the host's used memory before and after the judged trials is comparable.
        run_one("warmup", 0, workdir, device, device.used_mb(), args)
        baseline_mb = device.used_mb()
        for mode, mb in TRIALS:
            results.append(run_one(mode, mb, workdir, device, baseline_mb, args))
    if device.is_gpu:
        print(f"GPU baseline: {baseline_mb:.1f} MB used before the first trial")
    failures = check(results, device.is_gpu, args, baseline_mb)
    print_table(results, device.is_gpu, baseline_mb)
    for failure in failures:
        print(f"FAIL: {failure}")
    if not device.is_gpu:
        print("GPU checks skipped: no GPU on this machine (processes and host memory checked)")
    print("PASS" if not failures else f"FAILED ({len(failures)} problem(s))")
    return 1 if failures else 0


def check(results: list[dict], is_gpu: bool, args: argparse.Namespace,
          baseline_mb: float | None = None) -> list[str]:
    """Every problem found, one line each (empty: pass). On a GPU both the orchestrator's
    own residual and this script's independent NVML reading after the trial must be within
    tolerance of the baseline."""
    failures = []
    for r in results:
        record, name = r["record"], f"{r['run']} ({r['mode']} {r['mb']} MB)"
        if record.exit_code != 0:
            failures.append(f"{name}: the trial did not run (exit {record.exit_code}): "
                            f"{record.error}")
        if r["left"]:
            failures.append(f"{name}: trial processes still alive: {r['left']}, holding "
                            f"{r['held_mb']:.0f} MB of host memory")
        if r["host_after"] - r["host_before"] > args.host_tolerance_mb:
            failures.append(f"{name}: host memory in use grew by "
                            f"{r['host_after'] - r['host_before']:.0f} MB")
        if is_gpu:
            if record.cleanup.clean is not True:
                failures.append(f"{name}: GPU not proven clean ({record.cleanup.clean}) after "
                                f"{record.cleanup.wait_s} s: {record.cleanup.reason}")
            residual = record.gpu.residual_mb
            if residual is None or residual > args.tolerance_mb:
                failures.append(f"{name}: GPU residual {residual} MB > {args.tolerance_mb}")
            after = r["device_after"]
            if after is None or baseline_mb is None \
                    or after - baseline_mb > args.tolerance_mb:
                failures.append(f"{name}: device used {after} MB after the trial (our own "
                                f"NVML reading), baseline {baseline_mb} MB, tolerance "
                                f"{args.tolerance_mb} MB")
            failures += allocation_problems(r, results, name)
    return failures


def allocation_problems(r: dict, results: list[dict], name: str) -> list[str]:
    """Was the trial's allocation itself seen, told apart from its CUDA context? Its
    processes' NVML peak less the context-only trial's (where NVML names our processes),
    else the device's rise less the context-only trial's rise."""
    if r["mb"] == 0:
        return []
    record = r["record"]
    reference = next((x["record"] for x in results if x["mode"] == "context_only"), None)
    if record.gpu.attribution == "pid":
        peak = record.gpu.peak_tree_mb
        context = reference.gpu.peak_tree_mb if reference else None
        if not peak:
            return [f"{name}: no GPU memory of the trial's processes was seen ({peak})"]
    else:
        peak, context = _rise(record), _rise(reference) if reference else None
    if peak is None or context is None or peak - context < 0.9 * r["mb"]:
        return [f"{name}: the allocation was not seen on the GPU beyond the CUDA context "
                f"(peak {peak} MB, context alone {context} MB, attribution "
                f"{record.gpu.attribution})"]
    return []


def _rise(record) -> float | None:
    gpu = record.gpu
    if gpu.peak_used_mb is None or gpu.baseline_mb is None:
        return None
    return gpu.peak_used_mb - gpu.baseline_mb


def print_table(results: list[dict], is_gpu: bool, baseline_mb: float | None) -> None:
    """One row per trial. Two kinds of figure, never mixed in one column: the trial tree's
    own RSS peak, and the whole machine's memory in use (system) before and after it."""
    if is_gpu:
        print("\nGPU used MB (NVML): the device's baseline before the first trial, peak while "
              "the trial ran, after the wait; tree RSS peak: summed RSS of the trial's tree")
        header = ("run", "trial", "MB", "GPU base", "GPU peak", "GPU after", "GPU resid",
                  "trial GPU peak", "tree RSS peak")
    else:
        print("\ntree RSS peak: summed RSS of the trial's processes; sys used: the machine's "
              "memory in use (total - available) before and after the trial, MB")
        header = ("run", "trial", "MB", "tree RSS peak", "sys used before", "sys used after",
                  "sys residual")
    header += ("wait s", "killed", "left", "clean")
    rows = []
    for r in results:
        record = r["record"]
        if is_gpu:
            figures = (baseline_mb, record.gpu.peak_used_mb, r["device_after"],
                       record.gpu.residual_mb, record.gpu.peak_tree_mb, record.host.peak_rss_mb)
        else:
            figures = (record.host.peak_rss_mb, r["host_before"], r["host_after"],
                       r["host_after"] - r["host_before"])
        rows.append((r["run"], r["mode"], str(r["mb"]), *(_f(v) for v in figures),
                     f"{record.cleanup.wait_s:.2f}", str(record.cleanup.processes_killed),
                     str(len(r["left"])), str(record.cleanup.clean)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    print()


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
