"""The same trivial trial through gpusweep, Ray Tune and Optuna: overhead and leftovers.

The trial (bench/programs/peer_trial.py) reports three times 0.1 s apart and records when
its own work started and ended. Each runner runs N of them one at a time, in a fresh
interpreter started by this script (so its imports and start-up count as a user pays them):

- ``gpusweep``: ``tools/sweep.py`` over a grid, ``WANDB_MODE=disabled`` (no peer logs to
  W&B); ``gpusweep (W&B offline)`` is the same with each trial's offline W&B run (the
  default);
- ``Ray Tune``: a function trainable, a fresh actor per trial (bench/peers_runner.py);
- ``Optuna (subprocess)``: the objective runs the trial program with ``subprocess.run``;
- ``Optuna (in-process)``: the objective calls the trial's body (no isolation at all).

Figures, medians over the repeats: ``overhead_s`` per trial = (the command's wall time - the
trials' own work) / N, start-up and exit included; ``between_trials_s``, the median gap from
one trial's end to the next one's start; ``startup_s``, from the command's start to the first
trial's; ``exit_s``, from the last trial's end to the command's exit.

Leftovers: the trial leaves a daemon (``setsid``: a new session, the trial's environment
kept; ``emptyenv``: double fork, setsid, exec with an empty environment), in each of
``LEFTOVER_TRIALS`` trials; once the runner has exited (and ``SETTLE_S`` more), the daemons
still alive are counted, then every one is killed.

Ray Tune and Optuna come with the optional extra ``peers`` (``pip install -e '.[peers]'``);
a runner that is not installed is skipped and its row says so.

    python bench/peers.py [--quick] [--json] [--trials N] [--repeats R] [--only a,b]
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_parser, emit, median  # noqa: E402

TRIAL = ROOT / "bench" / "programs" / "peer_trial.py"
RUNNER = ROOT / "bench" / "peers_runner.py"
LEFTOVER_TRIALS = 3
SETTLE_S = 2.0
DAEMONS = ("setsid", "emptyenv")
MARKER = "peers-daemon-"


@dataclass(frozen=True)
class Peer:
    name: str
    needs: tuple[str, ...]  # modules that must be installed
    command: Callable[[int, str, str, str, str], list[str]]  # trials, events, workdir, ...
    env: dict[str, str]
    leftovers: bool = True  # measure the daemons it leaves


def gpusweep_command(trials: int, events: str, workdir: str, daemon: str,
                     tag: str) -> list[str]:
    config = {
        "program": str(TRIAL.relative_to(ROOT)),
        "method": "grid",
        "parameters": {"i": {"values": list(range(trials))}, "events": {"value": events},
                       "daemon": {"value": daemon}, "tag": {"value": tag},
                       "report": {"value": "gpusweep"}},
    }
    path = Path(workdir) / "sweep.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return [sys.executable, "tools/sweep.py", "--sweep-config", str(path), "--log-dir",
            str(Path(workdir) / "log"), "--quiet"]


def runner_command(runner: str) -> Callable[..., list[str]]:
    def command(trials: int, events: str, workdir: str, daemon: str, tag: str) -> list[str]:
        return [sys.executable, str(RUNNER), runner, "--trials", str(trials), "--events",
                events, "--workdir", workdir, "--daemon", daemon, "--tag", tag]

    return command


PEERS = [
    Peer("gpusweep", (), gpusweep_command, {"WANDB_MODE": "disabled"}),
    Peer("gpusweep (W&B offline)", ("wandb",), gpusweep_command, {"WANDB_MODE": "offline"},
         leftovers=False),
    Peer("Ray Tune", ("ray", "ray.tune", "pyarrow"), runner_command("ray"),
         {"RAY_USAGE_STATS_ENABLED": "0"}),
    Peer("Optuna (subprocess)", ("optuna",), runner_command("optuna-subprocess"), {}),
    Peer("Optuna (in-process)", ("optuna",), runner_command("optuna-inprocess"), {}),
]


def missing(peer: Peer) -> str | None:
    """Why the peer cannot run here, or None."""
    for module in peer.needs:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{module} is not installed (pip install -e '.[peers]')"
    return None


def run_once(peer: Peer, trials: int, daemon: str, tag: str) -> dict[str, float]:
    """One experiment; its figures from the trials' own timestamps."""
    workdir = tempfile.mkdtemp(prefix="gpusweep-peers-")
    events = str(Path(workdir) / "events.jsonl")
    command = peer.command(trials, events, workdir, daemon, tag)
    env = dict(os.environ, **peer.env)
    try:
        launched = time.time()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
        returned = time.time()
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")
        lines = Path(events).read_text().splitlines() if Path(events).exists() else []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    done = sorted((json.loads(line) for line in lines), key=lambda e: e["start"])
    if len(done) != trials:
        raise RuntimeError(f"{len(done)} of {trials} trials recorded their work")
    work = sum(e["end"] - e["start"] for e in done)
    gaps = [b["start"] - a["end"] for a, b in zip(done, done[1:], strict=False)]
    return {"overhead_s": (returned - launched - work) / trials,
            "between_trials_s": median(gaps) if gaps else float("nan"),
            "startup_s": done[0]["start"] - launched,
            "exit_s": returned - done[-1]["end"],
            "work_s": work / trials}


def daemons(tag: str, prefix: bool = False) -> list[psutil.Process]:
    """Live daemons that trials of this tag (or of every tag starting so) left."""
    wanted = f"{MARKER}{tag}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            argv = [str(a) for a in proc.info["cmdline"] or []]
        except psutil.Error:
            continue
        if any(a == wanted or (prefix and a.startswith(wanted)) for a in argv):
            found.append(proc)
    return found


def kill_daemons(tag: str, prefix: bool = False) -> int:
    """SIGKILL every daemon of this tag; how many there were."""
    procs = daemons(tag, prefix)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)
    return len(procs)


def leftovers(peer: Peer, daemon: str, tag: str) -> str:
    """How many of the daemons its trials left are alive once the runner has exited."""
    try:
        run_once(peer, LEFTOVER_TRIALS, daemon, tag)
        time.sleep(SETTLE_S)
        left = len(daemons(tag))
    finally:
        kill_daemons(tag)
    if daemons(tag):
        raise RuntimeError(f"could not end the daemons of {tag}")
    return f"{left} of {LEFTOVER_TRIALS}"


def measure(peer: Peer, trials: int, repeats: int, run_tag: str) -> dict:
    why = missing(peer)
    if why:
        return {"skipped": why}
    row: dict = {}
    try:
        runs = [run_once(peer, trials, "none", f"{run_tag}-t{r}") for r in range(repeats)]
        for key in ("overhead_s", "between_trials_s", "startup_s", "exit_s", "work_s"):
            row[key] = round(median([run[key] for run in runs]), 3)
        if peer.leftovers:
            for daemon in DAEMONS:
                row[f"left_{daemon}"] = leftovers(peer, daemon, f"{run_tag}-{daemon}")
        else:
            row.update({f"left_{d}": "not measured" for d in DAEMONS})
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        row["error"] = str(exc)[:300]
    return row


def main() -> None:
    parser = bench_parser(__doc__, counts=True)
    parser.add_argument("--only", help="comma-separated peer names (as in the table)")
    args = parser.parse_args()
    trials = args.trials or (5 if args.quick else 10)
    repeats = args.repeats or (2 if args.quick else 3)
    wanted = args.only.split(",") if args.only else [p.name for p in PEERS]
    unknown = sorted(set(wanted) - {p.name for p in PEERS})
    if unknown:
        parser.error(f"unknown peer {', '.join(unknown)} (known: "
                     f"{', '.join(p.name for p in PEERS)})")
    chosen = [p for p in PEERS if p.name in wanted]
    table = {}
    try:
        for number, peer in enumerate(chosen):
            table[peer.name] = measure(peer, trials, repeats, f"{os.getpid()}-{number}")
    finally:
        kill_daemons(f"{os.getpid()}-", prefix=True)  # whatever an interrupted run left
    emit({"trials": trials, "repeats": repeats, "leftover_trials": LEFTOVER_TRIALS,
          "versions": versions(), "peers": table}, args.json)


def versions() -> dict[str, str]:
    """The installed version of each runner measured (or "not installed")."""
    found = {}
    for name in ("ray", "optuna"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


if __name__ == "__main__":
    main()
