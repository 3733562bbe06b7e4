"""Cloud mode through ``tools/sweep.py``, against a FAKE W&B server (tests/fake_wandb_server.py).

wandb is not patched anywhere: the orchestrator's real ``wandb.Api()`` starts the real
wandb-core service, which talks HTTP to the fake server (``WANDB_BASE_URL``). Trials are real
subprocesses with real signals and files; their runs are offline (``WANDB_MODE=offline``:
the fake server does not take streamed runs), and are read back from their ``.wandb`` files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    ROOT,
    fault,
    journal_tokens,
    processes_with_token,
    program,
    wait_for_summary,
)
from fake_wandb_server import FakeWandbServer
from simnvml import compose
from wandb_records import offline_runs, read_run

REPORTER = program("reporter.py")
SLEEPER = program("sleeper.py")
INTERVAL_S = 0.2  # heartbeat interval in these tests (wandb agent: 5 s)

pytestmark = pytest.mark.slow


@pytest.fixture
def server():
    fake = FakeWandbServer().start()
    yield fake
    fake.close()


def sweep_config(**extra):
    config = {"program": REPORTER, "method": "grid",
              "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"x": {"values": [1, 2, 3]}, "steps": {"value": 3},
                             "every": {"value": 0.05}}}
    config.update(extra)
    return config


class Agent:
    """One ``tools/sweep.py`` cloud agent process against the fake server."""

    def __init__(self, server: FakeWandbServer, tmp_path: Path, *args: str,
                 log_dir: str = "log", interval_s: float = INTERVAL_S,
                 env: dict[str, str | None] | None = None) -> None:
        self.log_dir = tmp_path / log_dir
        environ = server.env(tmp_path / "home")
        environ.update(WANDB_MODE="offline", GPUSWEEP_HEARTBEAT_S=str(interval_s),
                       PYTHONFAULTHANDLER="1")
        for name, value in (env or {}).items():  # None: unset
            environ.pop(name, None) if value is None else environ.update({name: value})
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "sweep.py"), *args, "--log-dir",
             str(self.log_dir), "--quiet"], cwd=ROOT, env=environ, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 120) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack
            self.out, self.err = self.proc.communicate(timeout=30)
            for journal in self.log_dir.glob("*/journal.jsonl"):  # leave no trial behind
                for pid in processes_with_token(journal_tokens(journal.parent)):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"agent still running after {timeout} s:\n{self.err}") from None
        return self.proc.returncode

    def sweep_dir(self, sweep_id: str) -> Path:
        return self.log_dir / sweep_id

    def sweep(self, sweep_id: str) -> dict:
        return yaml.safe_load((self.sweep_dir(sweep_id) / "sweep.yaml").read_text())

    def memory(self, sweep_id: str, run: str) -> dict:
        return yaml.safe_load((self.sweep_dir(sweep_id) / run / "memory.yaml").read_text())


def test_a_joined_sweep_runs_the_servers_runs_until_it_says_exit(server, tmp_path):
    sweep = server.add_sweep(sweep_config())
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}")
    assert agent.wait() == 0, agent.err
    record = agent.sweep(sweep.name)
    assert record["sweep"]["state"] == "finished"
    assert sorted(r["run"] for r in record["trials"]) == sorted(server.runs(sweep.name))
    assert [r["status"] for r in record["trials"]] == ["finished"] * 3
    assert sorted(r["params"]["x"] for r in record["trials"]) == [1, 2, 3]
    assert len(server.agents) == 1 and "warning: WANDB_MODE=offline" in agent.out
    for run in server.runs(sweep.name).values():  # what only we know, in each run's summary
        assert run.summary["cleanup/clean"] is True and "memory/wait_s" in run.summary
        assert run.summary["gpusweep/status"] == "finished"
    first = record["trials"][0]["run"]
    assert agent.memory(sweep.name, first)["metric"]["reports"] == 3
    trial_run = read_run(offline_runs(agent.sweep_dir(sweep.name))[first])
    assert trial_run.sweep_id == sweep.name and trial_run.exit_code == 0
    outcome = wait_for_summary(agent.sweep_dir(sweep.name))
    assert outcome["state"] == "written", outcome
    assert outcome["run"].startswith(f"{sweep.name}-summary-")


def test_a_stale_wandb_service_in_the_agents_environment_is_not_used(server, tmp_path):
    """A shell that once ran wandb leaves WANDB_SERVICE naming a service long gone: neither
    the agent's own API calls nor its trials may try to connect to it."""
    sweep = server.add_sweep(sweep_config())
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}",
                  env={"WANDB_SERVICE": "3-999999-unix-/tmp/wandb-999999-gone/socket"})
    assert agent.wait() == 0, agent.err
    assert [r["status"] for r in agent.sweep(sweep.name)["trials"]] == ["finished"] * 3


def test_wandb_creates_the_sweep_in_the_project_wandb_sweep_would_use(server, tmp_path,
                                                                      write_sweep):
    path = write_sweep(dict(sweep_config(project="file-project", run_cap=2),
                            isolation={"stop": {"grace_s": 2}}))
    agent = Agent(server, tmp_path, "--wandb", "--sweep-config", str(path),
                  env={"WANDB_PROJECT": "env-project"})
    assert agent.wait() == 0, agent.err
    (sweep,) = server.sweeps.values()
    assert sweep.project == "env-project"  # WANDB_PROJECT before the file's project
    assert "isolation" not in sweep.config and sweep.config["run_cap"] == 2
    assert len(agent.sweep(sweep.name)["trials"]) == 2
    assert agent.sweep(sweep.name)["sweep"]["project"] == "env-project"


SLOW_GPU_AGENT = """
import os, sys, time
import psutil, wandb
sys.path.insert(0, {tests!r})
from fakes import FakeDevice
from gpusweep.wb.cloud_source import CloudSource
from gpusweep.config import parse_sweep
from gpusweep.display import QuietDisplay
from gpusweep.runner import SweepOptions, SweepRunner


class SlowReleaseDevice(FakeDevice):
    \"\"\"FAKE GPU whose memory comes back 5 s after the trial's last process is gone.\"\"\"

    def __init__(self):
        super().__init__([100.0])
        self.baseline_taken, self.last_seen = False, None

    def used_mb(self):
        if not self.baseline_taken:
            self.baseline_taken = True
            return 100.0
        now = time.monotonic()
        if any({program!r} in " ".join(p.info["cmdline"] or ())
               for p in psutil.process_iter(["cmdline"]) if p.pid != os.getpid()):
            self.last_seen = now
        if self.last_seen is not None and now - self.last_seen < 5:
            return 900.0
        return 100.0


spec = parse_sweep({config!r}, "fake-sweep")
os.environ.update(WANDB_SWEEP_ID={sweep!r}, WANDB_ENTITY="team", WANDB_PROJECT="proj")
source = CloudSource(api=wandb.Api(), sweep_id={sweep!r}, spec=spec, entity="team",
                     project="proj", slots=1, trial_mode="offline", interval_s={interval!r})
options = SweepOptions(log_dir={log_dir!r}, project="proj", entity="team")
sys.exit(SweepRunner(spec, options, [SlowReleaseDevice()], QuietDisplay(), source).run())
"""


def test_heartbeats_go_on_while_a_trial_is_finished_and_a_run_waits(server, tmp_path):
    """A trial that ignores SIGTERM (grace 15 s) is stopped by the server, and the GPU comes
    back only 5 s after its tree is gone; meanwhile another run arrives for the busy slot:
    it is queued, and no heartbeat waits for any of it."""
    program_copy = tmp_path / f"ignore_term_{os.getpid()}_{time.monotonic_ns()}.py"
    program_copy.write_text((ROOT / "tests" / "faults" / "ignore_term.py").read_text())
    config = {"program": str(program_copy), "method": "grid",
              "parameters": {"x": {"values": [1]}}}
    sweep = server.add_sweep(config, propose=False)
    interval = 0.5
    state = {"stopped": None}
    log = tmp_path / "log" / sweep.name

    def script(beat):
        running = [r for r, up in beat.run_states.items() if up]
        if not running and state["stopped"] is None and not server.runs(sweep.name):
            return [{"type": "run", "run_id": "hold1", "program": "x", "args": {
                "x": {"value": 1}}}]
        if running == ["hold1"] and state["stopped"] is None:
            output = log / "hold1" / "output.log"
            if output.exists() and "ignoring" in output.read_text():
                state["stopped"] = time.monotonic()
                server.stop("hold1")
                return [{"type": "run", "run_id": "next2", "program": "x", "args": {
                    "x": {"value": 2}}}]
        if state["stopped"] and "hold1" not in beat.run_states:
            return [{"type": "exit"}]
        return []

    server.on_heartbeat(script)
    isolation = {"stop": {"grace_s": 15}, "wait": {"max_s": 30, "tolerance_mb": 256}}
    code = SLOW_GPU_AGENT.format(tests=str(ROOT / "tests"), program=program_copy.name,
                                 config=dict(
        config, isolation=isolation), sweep=sweep.name, interval=interval,
        log_dir=str(tmp_path / "log"))
    env = server.env(tmp_path / "home")
    env.update(WANDB_MODE="offline")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = yaml.safe_load((log / "sweep.yaml").read_text())
    statuses = {r["run"]: r["status"] for r in record["trials"]}
    assert statuses == {"hold1": "stopped", "next2": "killed"}  # next2 ran after, queued
    hold = yaml.safe_load((log / "hold1" / "memory.yaml").read_text())
    assert hold["cleanup"]["processes_killed"] >= 1 and hold["cleanup"]["clean"]
    assert hold["reason"] == "stopped by the W&B server" and hold["cleanup"]["wait_s"] > 1
    during = [b.t for b in server.heartbeats if state["stopped"] <= b.t]
    assert len(during) > 20  # the 15 s grace, the GPU wait and the next run are covered
    gaps = [later - earlier for earlier, later in zip(during, during[1:], strict=False)]
    assert max(gaps) < 2 * interval, gaps  # never waiting on the trial's finish
    # the queued run was reported as the agent's while it waited
    assert any(b.run_states.get("next2") and b.run_states.get("hold1")
               for b in server.heartbeats)
    # the server re-sent the stop on every heartbeat until the run was gone: one stop
    stops = [c for _, c in server.sent if c == {"type": "stop", "run_id": "hold1"}]
    assert len(stops) > 10 and hold["cleanup"]["processes_killed"] == 1


def test_a_stop_past_hyperbands_first_band_is_stopped_early_and_before_it_stopped(
        server, tmp_path):
    config = sweep_config(early_terminate={"type": "hyperband", "min_iter": 3})
    config["parameters"] = {"x": {"values": [1, 2]}, "steps": {"value": 400},
                            "every": {"value": 0.1}}
    sweep = server.add_sweep(config)
    log = tmp_path / "log" / sweep.name

    def reports(run):
        events = log / run / "events.jsonl"
        return sum('"report"' in line for line in events.read_text().splitlines()) \
            if events.exists() else 0

    def script(beat):
        for run, up in beat.run_states.items():
            if up and run not in server._stops:
                ordinal = list(server.runs(sweep.name)).index(run)
                if (ordinal == 0 and reports(run) >= 1) or (ordinal == 1 and reports(run) >= 4):
                    server.stop(run)
        return []

    server.on_heartbeat(script)
    agent = Agent(server, tmp_path, "--sweep-id", sweep.name, "--project", "proj")
    assert agent.wait() == 0, agent.err
    first, second = list(server.runs(sweep.name))
    statuses = {r["run"]: r["status"] for r in agent.sweep(sweep.name)["trials"]}
    assert statuses == {first: "stopped", second: "stopped_early"}
    # a stopped trial's run ends with the exit code the trial really had
    runs = offline_runs(log)
    assert read_run(runs[first]).exit_code == 143 and read_run(runs[second]).exit_code == 143


def test_several_slots_and_several_agents_share_one_sweep(server, tmp_path):
    config = sweep_config()
    config["parameters"] = {"x": {"values": [1, 2, 3, 4, 5, 6]}, "steps": {"value": 3},
                            "every": {"value": 0.3}}
    sweep = server.add_sweep(config)
    one = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}", "--slots", "2",
                log_dir="log-a")
    two = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}", log_dir="log-b")
    assert one.wait() == 0, one.err
    assert two.wait() == 0, two.err
    rows = one.sweep(sweep.name)["trials"] + two.sweep(sweep.name)["trials"]
    assert sorted(r["params"]["x"] for r in rows) == [1, 2, 3, 4, 5, 6]
    assert len(server.agents) == 3  # one W&B agent per slot
    assert {r["slot"] for r in one.sweep(sweep.name)["trials"]} <= {0, 1}
    ids = {wait_for_summary(a.sweep_dir(sweep.name))["run"] for a in (one, two)}
    assert len(ids) == 2  # each agent its own summary run: none overwrites another


def test_transient_server_errors_never_end_the_agent(server, tmp_path):
    sweep = server.add_sweep(sweep_config(parameters={"x": {"values": [1]},
                                                      "steps": {"value": 3},
                                                      "every": {"value": 0.05}}))
    server.fail("Heartbeat", 500, 502)  # wandb-core retries these with back-off
    server.fail("UpsertBucket", 503)  # the summary push after the trial
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}")
    assert agent.wait(timeout=240) == 0, agent.err
    (run,) = server.runs(sweep.name).values()
    assert [r["status"] for r in agent.sweep(sweep.name)["trials"]] == ["finished"]
    assert run.summary.get("cleanup/clean") is True  # pushed once the server answered


def test_heartbeats_past_the_servers_timeout_never_end_the_agent_nor_its_trial(
        server, tmp_path):
    """The server holds two heartbeats while a trial runs and never answers them: wandb-core
    gives each attempt up after its per-request timeout (``WANDB_HTTP_TIMEOUT``) and retries,
    as under ``wandb agent`` (the same ``_agent_heartbeat``); the trial runs on."""
    sweep = server.add_sweep(sweep_config(parameters={"x": {"values": [1]},
                                                      "seconds": {"value": 3}},
                                          program=SLEEPER))
    held = {"done": False}

    def script(beat):
        if any(beat.run_states.values()) and not held["done"]:
            held["done"] = True
            server.delay("Heartbeat", 600, 600)  # never answered while this test runs
        return []

    server.on_heartbeat(script)
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}",
                  env={"WANDB_HTTP_TIMEOUT": "2"})
    assert agent.wait(timeout=240) == 0, agent.err
    assert [op for op, _ in server.delayed] == ["Heartbeat", "Heartbeat"]
    # a heartbeat got through after the held ones (the retry), and the sweep went on to exit
    assert any(b.t > server.delayed[-1][1] for b in server.heartbeats)
    (row,) = agent.sweep(sweep.name)["trials"]
    memory = agent.memory(sweep.name, row["run"])
    assert row["status"] == "finished" and memory["exit_code"] == 0
    assert memory["cleanup"]["clean"] is True


def test_a_joined_sweep_applies_the_host_memory_limit_and_stall_s(server, tmp_path,
                                                                  write_sweep):
    """The guards of a local sweep, in cloud mode: ``isolation`` from ``--sweep-config``."""
    config = {"program": fault("hog_or_stall.py"), "method": "grid",
              "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"what": {"values": ["hog", "stall"]}}}
    sweep = server.add_sweep(config)
    path = write_sweep(dict(config, isolation={"limits": {"rss_mb": 400}, "stall_s": 2,
                                               "stop": {"grace_s": 1}}))
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}",
                  "--sweep-config", str(path))
    assert agent.wait() == 0, agent.err
    rows = {r["params"]["what"]: r for r in agent.sweep(sweep.name)["trials"]}
    hog = agent.memory(sweep.name, rows["hog"]["run"])
    assert hog["status"] == "host_oom" and "isolation.limits.rss_mb 400" in hog["reason"]
    assert 400 < hog["host"]["peak_rss_mb"] < 1500  # stopped near the limit, not at 6 GB
    stalled = agent.memory(sweep.name, rows["stall"]["run"])
    assert stalled["status"] == "stalled"
    output = (agent.sweep_dir(sweep.name) / rows["stall"]["run"] / "output.log").read_text()
    assert "hog_or_stall.py\", line 20 in <module>" in output  # its stack, dumped first
    assert processes_with_token(journal_tokens(agent.sweep_dir(sweep.name))) == []


def test_on_dirty_abort_ends_a_cloud_agent_after_a_proven_leak(server, tmp_path):
    """A trial leaves 800 MB on a SIMULATED GPU (tests/simnvml): the agent stops as a local
    sweep does (exit 3), and the server hands out no further run to it."""
    sim = compose.scenario(tmp_path, [compose.gpu(0)])
    config = {"program": program("sim_gpu.py"), "method": "grid",
              "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"x": {"values": [1, 2, 3]}, "mb": {"value": 500},
                             "orphan_mb": {"value": 800}}}
    sweep = server.add_sweep(config)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(dict(config, isolation={
        "on_dirty": "abort", "stop": {"grace_s": 1},
        "wait": {"max_s": 1.0, "tolerance_mb": 256}})))
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}",
                  "--sweep-config", str(path),
                  env=dict(compose.environ(sim, base={}), CUDA_VISIBLE_DEVICES=None))
    assert agent.wait() == 3, agent.out + agent.err
    (row,) = agent.sweep(sweep.name)["trials"]
    memory = agent.memory(sweep.name, row["run"])
    assert memory["cleanup"]["clean"] is False
    assert memory["gpu"]["residual_mb"] == pytest.approx(800, abs=1)
    assert agent.sweep(sweep.name)["sweep"]["state"] != "finished"
    assert len(server.runs(sweep.name)) == 1  # no second run handed out after the abort


def test_a_deleted_sweep_lets_the_running_trial_end_then_exits_6(server, tmp_path):
    sweep = server.add_sweep(sweep_config(parameters={"x": {"values": [1, 2]},
                                                      "seconds": {"value": 3}},
                                          program=SLEEPER))
    deleted = {"done": False}

    def script(beat):
        if any(beat.run_states.values()) and not deleted["done"]:
            sweep.deleted = deleted["done"] = True
        return []

    server.on_heartbeat(script)
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}")
    assert agent.wait() == 6, agent.err
    assert [r["status"] for r in agent.sweep(sweep.name)["trials"]] == ["finished"]
    assert "deleted" in agent.out


def test_a_refused_registration_is_one_line_and_exit_2(server, tmp_path):
    sweep = server.add_sweep(sweep_config())
    server.refuse_agents = "sweep is not running"
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}")
    assert agent.wait() == 2
    assert "refused this agent" in agent.err and "sweep is not running" in agent.err
    missing = Agent(server, tmp_path, "--sweep-id", "team/proj/nosuch1", log_dir="log2")
    assert missing.wait() == 2 and "not found" in missing.err


def test_sigterm_preempts_every_trial_and_a_resumed_run_reads_only_new_events(
        server, tmp_path):
    config = sweep_config(parameters={"x": {"values": [1, 2]}, "seconds": {"value": 60}},
                          program=SLEEPER)
    sweep = server.add_sweep(config)
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}", "--slots", "2")
    log = tmp_path / "log" / sweep.name

    def sleeping(run):  # past wandb.init and the first report: its run can be marked
        output = log / run / "output.log"
        return output.exists() and "sleeping" in output.read_text()

    assert server.wait_for(lambda: len(server.runs(sweep.name)) == 2 and all(
        sleeping(r) for r in server.runs(sweep.name)), timeout_s=120)
    runs = list(server.runs(sweep.name))
    agent.proc.send_signal(signal.SIGTERM)  # Slurm's preemption, scancel, Kubernetes
    assert agent.wait() == 130, agent.err
    record = agent.sweep(sweep.name)
    assert record["sweep"]["state"] == "interrupted"
    assert sorted(r["status"] for r in record["trials"]) == ["preempted", "preempted"]
    assert processes_with_token(journal_tokens(log)) == []
    for run in runs:  # each run marked itself preempting before it exited
        assert read_run(offline_runs(log)[run]).preempting

    # The server hands one of them out again, as a resume: only its new events count.
    sweep.propose = False
    server.send({"type": "resume", "run_id": runs[0], "program": SLEEPER,
                 "args": {"x": {"value": 1}, "seconds": {"value": 0.2}}})
    server.on_heartbeat(lambda beat: [{"type": "exit"}] if not beat.run_states and
                        any(r["run"] == runs[0] and r.get("status") == "finished"
                            for r in _rows(log)) else [])
    again = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}")
    assert again.wait() == 0, again.err
    resumed = yaml.safe_load((log / runs[0] / "memory.yaml").read_text())
    assert resumed["status"] == "finished" and resumed["metric"]["reports"] == 2


def _rows(sweep_dir: Path) -> list[dict]:
    try:
        return yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"] or []
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return []


def test_a_trial_that_marks_itself_preempting_is_recorded_preempted(server, tmp_path):
    sweep = server.add_sweep({"program": program("self_preempt.py"), "method": "grid",
                              "parameters": {"x": {"values": [1]}}})
    agent = Agent(server, tmp_path, "--sweep-id", f"team/proj/{sweep.name}")
    assert agent.wait() == 0, agent.err
    (row,) = agent.sweep(sweep.name)["trials"]
    assert row["status"] == "preempted"
    assert os.path.exists(agent.sweep_dir(sweep.name) / row["run"] / "memory.yaml")
