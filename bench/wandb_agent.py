"""The W&B side of a sweep's end and of a cloud agent's finishing.

- ``summary_s``: how long the summary subprocess takes to write the sweep-summary run
  (offline), which the orchestrator no longer waits for (it starts it detached), next to
  the orchestrator's whole wall time for a one-trial offline sweep;
- ``heartbeat_max_gap_s``: the longest gap between two heartbeats a FAKE W&B server
  (tests/fake_wandb_server.py, the real wandb-core talking to it) sees while a trial that
  ignores SIGTERM is stopped with a 15 s grace (wandb's agent heartbeats every 5 s and only
  signals; the loop that did the stop inline went 15 s and more without one).

    python bench/wandb_agent.py [--quick] [--json]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench.common import ROOT, bench_parser, emit, median  # noqa: E402
from gpusweep.records import SummaryState  # noqa: E402
from gpusweep.wb.summary import summary_outcome  # noqa: E402

INTERVAL_S = 0.5


def sweep_end(root: Path) -> tuple[float, float]:
    """(orchestrator wall s, summary subprocess s) for one offline one-trial sweep."""
    sweep_file = root / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "program": "tests/programs/quadratic.py", "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"}, "project": "bench",
        "parameters": {"x": {"value": 3}, "epochs": {"value": 2}}}))
    env = dict(os.environ, WANDB_MODE="offline")
    env.pop("WANDB_SERVICE", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
                    "--log-dir", str(root / "log"), "--quiet"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=300)
    wall = time.perf_counter() - started
    (sweep_dir,) = (root / "log").iterdir()
    deadline = time.monotonic() + 300
    outcome: dict = {}
    while time.monotonic() < deadline:
        outcome = summary_outcome(str(sweep_dir))
        if SummaryState.parse(outcome.get("state")) in (SummaryState.WRITTEN,
                                                        SummaryState.FAILED):
            break
        time.sleep(0.1)
    return wall, float(outcome["ended"]) - float(outcome["started"])


def heartbeat_gap(root: Path) -> float:
    """The longest heartbeat gap from the server's stop to the agent's exit."""
    from fake_wandb_server import FakeWandbServer

    server = FakeWandbServer().start()
    try:
        sweep = server.add_sweep({"program": "tests/faults/ignore_term.py", "method": "grid",
                                  "parameters": {"x": {"values": [1]}}}, propose=False)
        state: dict = {"stopped": None}

        def script(beat):
            if not beat.run_states and state["stopped"] is None and \
                    not server.runs(sweep.name):
                return [{"type": "run", "run_id": "trial1", "program": "x",
                         "args": {"x": {"value": 1}}}]
            output = root / "log" / sweep.name / "trial1" / "output.log"
            if beat.run_states.get("trial1") and state["stopped"] is None and \
                    output.exists() and "ignoring" in output.read_text():
                state["stopped"] = time.monotonic()
                server.stop("trial1")
            if state["stopped"] and not beat.run_states:
                return [{"type": "exit"}]
            return []

        server.on_heartbeat(script)
        local = root / "iso.yaml"
        local.write_text(yaml.safe_dump(dict(sweep.config,
                                             isolation={"stop": {"grace_s": 15}})))
        env = server.env(root / "home")
        env.update(WANDB_MODE="offline", GPUSWEEP_HEARTBEAT_S=str(INTERVAL_S))
        subprocess.run([sys.executable, "tools/sweep.py", "--sweep-id",
                        f"team/proj/{sweep.name}", "--sweep-config", str(local),
                        "--log-dir", str(root / "log"), "--quiet"], cwd=ROOT, env=env,
                       check=True, capture_output=True, timeout=300)
        beats = [b.t for b in server.heartbeats if b.t >= state["stopped"]]
        return max(b - a for a, b in zip(beats, beats[1:], strict=False))
    finally:
        server.close()


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    walls, summaries, gaps = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            wall, summary = sweep_end(Path(tmp))
            walls.append(wall)
            summaries.append(summary)
        with tempfile.TemporaryDirectory() as tmp:
            gaps.append(heartbeat_gap(Path(tmp)))
    emit({"repeats": repeats, "orchestrator_wall_s_median": round(median(walls), 2),
          "summary_s_not_waited_median": round(median(summaries), 2),
          "heartbeat_interval_s": INTERVAL_S,
          "heartbeat_max_gap_s_median": round(median(gaps), 3),
          "heartbeat_max_gap_over_interval": round(median(gaps) / INTERVAL_S, 2),
          "grace_s": 15}, args.json)


if __name__ == "__main__":
    main()
