"""``make bench``: run every benchmark (quick by default) and write docs/BENCHMARKS.md.

Each benchmark prints one JSON object as its last line with ``--json``; this collects them,
compares them with their targets, and renders one page: machine, date, commands, medians,
ratios. GPU figures appear only when measured on a GPU, marked with the device's name.

    python bench/run_all.py [--full] [--out docs/BENCHMARKS.md] [--only name,name]

Not in the default list: ``peers`` (gpusweep beside Ray Tune and Optuna), which needs the
optional extra ``peers``: ``pip install -e '.[peers]'`` then ``--only peers`` (or
``make bench-peers``, which does both).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine  # noqa: E402
from bench.targets import check_targets, describe_machine, render  # noqa: E402

BENCHMARKS = ["inter_trial_overhead", "orchestrator_startup", "trial_startup",
              "containment_cost", "monitor_overhead", "parent_scale", "fault_detection",
              "slots_scaling", "auto_slots", "data_pipeline", "train_throughput", "data_on_device",
              "wandb_agent"]
OPTIONAL = ["peers"]  # needs the extra ``peers`` (Ray Tune, Optuna): run with --only peers


def run_one(name: str, full: bool) -> dict:
    script = ROOT / "bench" / f"{name}.py"
    if not script.exists():
        return {"error": "not present"}
    command = [sys.executable, str(script.relative_to(ROOT)), "--json"]
    if not full:
        command.append("--quick")
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    elapsed = round(time.monotonic() - started, 1)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}",
                "command": " ".join(command[1:]), "seconds": elapsed}
    result = json.loads(lines[-1])
    result["command"] = "python " + " ".join(command[1:])
    result["seconds"] = elapsed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full runs instead of --quick")
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--render", action="store_true",
                        help="only re-render the page from the .json of the last run")
    args = parser.parse_args()
    raw = Path(args.out).with_suffix(".json")
    if args.render:
        saved = json.loads(raw.read_text())
        Path(args.out).write_text(render(saved["machine"], saved["results"],
                                         check_targets(saved["results"])))
        print(f"wrote {args.out}")
        return
    names = args.only.split(",") if args.only else BENCHMARKS
    unknown = [name for name in names if name not in BENCHMARKS + OPTIONAL]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: "
                     f"{', '.join(BENCHMARKS + OPTIONAL)})")
    results = {}
    if args.only and raw.exists():  # re-measure some: keep the others, with their own stamps
        saved = json.loads(raw.read_text())
        stamp = {"date": saved["machine"]["date"], "mode": saved["machine"]["mode"],
                 "machine": describe_machine(saved["machine"])}
        results = {name: {**stamp, **result} for name, result in saved["results"].items()}
    info = machine()
    info["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    info["mode"] = "full" if args.full else "quick"
    here = {"date": info["date"], "mode": info["mode"], "machine": describe_machine(info)}
    failed = []
    for name in names:
        print(f"bench {name} ...", flush=True)
        # Each result keeps its own date, mode and machine: --only merges it with older ones.
        results[name] = {**run_one(name, args.full), **here}
        print(f"  {json.dumps(results[name])}", flush=True)
        if "error" in results[name]:
            failed.append(name)
    page = render(info, results, check_targets(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    Path(args.out).write_text(page)
    print(f"wrote {args.out} and {raw}")
    if failed:
        print(f"error: failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
