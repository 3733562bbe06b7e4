#!/usr/bin/env python
"""``make gpu-check``: everything that needs a real GPU, in one command, into docs/GPU_CHECK.md.

On a CUDA machine it runs, each with its own time limit inside one budget (about 10 minutes
on an H100): ``pytest -m gpu``, ``python test_gpu_cleanup.py``, ``./test_memory_cleanup.sh``
on a small memory sweep, and the GPU benchmarks (training throughput with the GPU's busy %,
the two batch paths of the stock model, the overhead and residual of each wait policy, trials
per hour with ``--slots auto`` against one slot). It
then writes the page: device, driver, torch and CUDA, each step's result and figures. A
step past its limit is ended with everything it started (trials left on the GPU would count
against the later steps); what a step printed goes onto the page with secrets masked.

It uses the Python and torch it runs with and installs nothing. On a machine without a GPU
it says so and exits 1, writing nothing. ``--dry-run`` prints the steps without running them;
``--allow-cpu`` runs them anyway (the GPU parts skip), to check the command on a CPU.

    python tools/gpu_check.py [--out docs/GPU_CHECK.md] [--budget-s 660] [--dry-run]
                              [--allow-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
STEP_ENV = "GPUSWEEP_CHECK_STEP"  # marks every process a step starts, wherever it went
STOP_GRACE_S = 30.0  # a sweep's own SIGTERM handling ends its trials within their grace_s
MIN_STEP_S = 20.0  # budget below which a step is not started
sys.path.insert(0, str(ROOT))

PROBE = ("import json, torch; ok = torch.cuda.is_available(); print(json.dumps({"
         "'torch': torch.__version__, 'cuda': torch.version.cuda, 'available': ok, "
         "'name': torch.cuda.get_device_name(0) if ok else None, "
         "'capability': list(torch.cuda.get_device_capability(0)) if ok else None}))")


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    what: str
    env: dict[str, str] = field(default_factory=dict)
    json_result: bool = False  # a benchmark: its last line is a JSON object
    no_skips: bool = False  # on a GPU nothing may skip (a skip would hide a missing GPU)


def steps(python: str) -> list[Step]:
    return [
        Step("pytest -m gpu", [python, "-m", "pytest", "-m", "gpu", "-q", "-p",
                               "no:cacheprovider", "tests/"], 240,
             "real CUDA leaks in trials, a grandchild holding the GPU, the cleanup script: "
             "the trial's processes found, the context told apart, the device back",
             no_skips=True),
        Step("test_gpu_cleanup.py", [python, "test_gpu_cleanup.py"], 150,
             "the incident's own check, rebuilt: trials that exit without freeing",
             no_skips=True),
        Step("test_memory_cleanup.sh", ["./test_memory_cleanup.sh",
                                        "sweeps/sweep_memory_small.yaml"], 200,
             "a memory sweep of the stock model through tools/sweep.py, records checked",
             env={"PYTHON": python, "TIMEOUT_S": "180"}),
        Step("bench train_throughput", [python, "bench/train_throughput.py", "--quick",
                                        "--json"], 150,
             "samples/s and the GPU's busy % per architecture and batch, AMP on and off",
             json_result=True),
        Step("bench data_on_device", [python, "bench/data_on_device.py", "--quick", "--json"],
             120, "the stock model's batches: memmap loader vs the matrix on the GPU",
             json_result=True),
        Step("bench inter_trial_overhead", [python, "bench/inter_trial_overhead.py", "--json",
                                            "--trials", "3", "--repeats", "1"], 150,
             "overhead per trial and the residual each wait policy leaves on the GPU",
             json_result=True),
        Step("bench auto_slots", auto_slots_argv(python), 300,
             "trials per hour of sweeps/sweep_quick.yaml, --slots auto against one slot "
             "(target >= 4x on an H100), and how many trials auto ran at once",
             json_result=True),
    ]


def auto_slots_argv(python: str, count: int = 8) -> list[str]:
    """The auto-slots step: the quick stock sweep, ``count`` trials with one slot, then
    ``count`` with ``--slots auto``, on the GPU."""
    return [python, "bench/auto_slots.py", "--sweep", "sweeps/sweep_quick.yaml", "--count",
            str(count), "--json"]


@dataclass
class Outcome:
    step: Step
    code: int | None  # None: not run (time budget)
    seconds: float
    output: str
    result: dict | None = None


def run(step: Step, left_s: float, on_gpu: bool = True) -> Outcome:
    from gpusweep.redact import redact, secret_values

    if left_s < MIN_STEP_S:
        return Outcome(step, None, 0.0, "not run: the time budget was spent")
    limit = min(step.timeout_s, left_s)
    started = time.monotonic()
    marker = f"{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE=os.environ.get("WANDB_MODE",
                                                                           "disabled"),
               **step.env, **{STEP_ENV: marker})
    # A group of its own, so that a step past its time is ended with all it started.
    proc = subprocess.Popen(step.argv, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        end_step(proc, marker)
        code = 124
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a survivor holds the pipes open
            out, err = "", "(its output was lost: a process it started survived SIGKILL)"
        err += f"\n(stopped after {limit:.0f} s)"
    # The tail goes onto a committed page: mask what the step printed of our secrets.
    output = redact(_text(out) + _text(err), secret_values(env))
    if step.no_skips and code == 0 and on_gpu and re.search(r"\bskipped\b", output):
        code = 3  # passed only because the GPU part did not run
        output += "\n(gpu-check: counted as a failure: it skipped on a machine with a GPU)"
    result = None
    if step.json_result and code == 0:
        try:
            result = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = None
    return Outcome(step, code, time.monotonic() - started, output, result)


def end_step(proc: subprocess.Popen, marker: str) -> None:
    """End a step past its time and everything it started: SIGTERM to its group first, so
    that a sweep it runs stops its own trials within their grace, then the same for what
    is left outside the group (trials in sessions of their own carry the step's marker).
    A trial left on the GPU would be counted against every later step."""
    from gpusweep.cleanup import end_tree

    end_tree(proc.pid, None, grace_s=STOP_GRACE_S,
             members=lambda: [p.pid for p in psutil.process_iter()
                              if _environ(p).get(STEP_ENV) == marker])


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def probe(python: str) -> dict:
    """torch's view (in a subprocess: this process never creates a CUDA context) and NVML's."""
    proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=120)
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        info = {"available": False, "error": (proc.stderr or proc.stdout).strip()[-300:]}
    from gpusweep.gpu.scan import scan_devices

    scan = scan_devices()
    info["nvml"] = [f"{d.info.label}: {d.info.name} ({d.info.uuid}, "
                    f"{d.info.total_mb or 0:.0f} MB)" for d in scan.devices]
    info["driver"] = scan.driver
    info["nvml_problems"] = scan.problems
    return info


def page(info: dict, outcomes: list[Outcome], total_s: float) -> str:
    lines = ["# GPU check", "",
             "Written by `make gpu-check` (`python tools/gpu_check.py`) on a machine with a GPU: "
             "the checks CI cannot run. Each step's command, result and time, then its figures.",
             "", f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
             f"- GPU (torch): {info.get('name')}, compute capability "
             f"{'.'.join(map(str, info.get('capability') or [])) or '?'}",
             f"- NVML: {'; '.join(info['nvml']) or 'none'}; driver {info.get('driver')}",
             f"- torch {info.get('torch')}, CUDA {info.get('cuda')}, Python "
             f"{sys.version.split()[0]}",
             f"- total: {total_s:.0f} s", "",
             "| step | what it checks | result | seconds |", "| --- | --- | --- | --- |"]
    for o in outcomes:
        result = "not run" if o.code is None else ("pass" if o.code == 0 else f"FAIL ({o.code})")
        argv = o.step.argv[1:] if o.step.argv[0] == sys.executable else o.step.argv
        lines.append(f"| `{' '.join(['python', *argv] if argv is not o.step.argv else argv)}` "
                     f"| {o.step.what} | {result} | {o.seconds:.0f} |")
    for o in outcomes:
        lines += ["", f"## {o.step.name}", ""]
        if o.result is not None:
            lines += ["```json", json.dumps(o.result, indent=1, sort_keys=True), "```"]
        else:
            tail = "\n".join(o.output.strip().splitlines()[-40:])
            lines += ["```", tail or "(no output)", "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "GPU_CHECK.md"))
    parser.add_argument("--budget-s", type=float, default=660.0)
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run the steps without a GPU too (checks this command itself; "
                        "the GPU parts skip)")
    args = parser.parse_args(argv)
    python = sys.executable
    if args.dry_run:
        for step in steps(python):
            print(f"{step.name}: {' '.join(step.argv)} (at most {step.timeout_s:.0f} s)")
        return 0
    info = probe(python)
    if (not info.get("available") or not info["nvml"]) and not args.allow_cpu:
        why = [] if info.get("available") else ["torch.cuda.is_available() is False"]
        why += [] if info["nvml"] else ["NVML sees no GPU"]
        print(f"gpu-check: no GPU on this machine ({'; '.join(why)}): nothing run, "
              f"{args.out} not written", file=sys.stderr)
        return 1
    started = time.monotonic()
    outcomes = []
    for step in steps(python):
        left = args.budget_s - (time.monotonic() - started)
        print(f"gpu-check: {step.name} ...", flush=True)
        outcome = run(step, left, on_gpu=bool(info.get("available") and info["nvml"]))
        outcomes.append(outcome)
        print(f"gpu-check: {step.name}: "
              f"{'not run' if outcome.code is None else outcome.code} "
              f"({outcome.seconds:.0f} s)", flush=True)
    total = time.monotonic() - started
    Path(args.out).write_text(page(info, outcomes, total))
    failed = [o.step.name for o in outcomes if o.code != 0]
    print(f"gpu-check: wrote {args.out} in {total:.0f} s"
          + (f"; failed or not run: {', '.join(failed)}" if failed else "; all passed"))
    return 1 if failed else 0


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


if __name__ == "__main__":
    sys.exit(main())
