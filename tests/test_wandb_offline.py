"""Every trial a W&B run, offline, read back from the files wandb wrote (no network)."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, program, wait_for_summary
from wandb_records import offline_runs, read_run

from gpusweep.wb.summary import agent_key

pytestmark = pytest.mark.slow


def quadratic_grid(**extra):
    config = {"name": "offline", "program": program("quadratic.py"), "method": "grid",
              "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"x": {"values": [1, 3]}, "epochs": {"value": 3}},
              "isolation": {"stop": {"grace_s": 2}}}
    config.update(extra)
    return config


def sweep(sweep_file, log_dir, *extra, **env):
    environ = dict(os.environ, **env)
    environ.pop("WANDB_SWEEP_ID", None)
    if "WANDB_PROJECT" not in env:
        environ.pop("WANDB_PROJECT", None)
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file), "--log-dir",
         str(log_dir), "--quiet", *extra], cwd=ROOT, env=environ, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    wait_for_summary(sweep_dir)
    return sweep_dir, yaml.safe_load((sweep_dir / "sweep.yaml").read_text())


@pytest.fixture(scope="module")
def offline_sweep(tmp_path_factory):
    """One offline sweep of two trials, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("offline")
    sweep_file = root / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(quadratic_grid(), sort_keys=False))
    return sweep(sweep_file, root / "log", WANDB_MODE="offline")


def test_each_trial_is_an_offline_run_with_config_history_and_summary(offline_sweep):
    sweep_dir, record = offline_sweep
    sweep_id = sweep_dir.name
    runs = offline_runs(sweep_dir)
    for row in record["trials"]:
        run = read_run(runs[row["run"]])  # the offline run dir is named with the trial's id
        assert run.run_id == row["run"] and run.config == row["params"]
        assert (run.group, run.tags, run.job_type) == (f"offline-{sweep_id}", [sweep_id],
                                                       "trial")
        assert run.sweep_id == ""  # a local id the server does not know is never recorded
        lines = (sweep_dir / row["run"] / "events.jsonl").read_text().splitlines()
        reported = [e["metrics"]["loss"] for e in map(json.loads, lines)
                    if e["kind"] == "report"]
        assert [h["loss"] for h in run.history] == reported and len(reported) == 3
        assert all(h["memory/rss_mb"] > 0 for h in run.history)
        assert "memory/gpu_allocated_mb" not in run.history[0]  # no CUDA: never invented
        assert run.summary["loss"] == reported[-1] and run.exit_code == 0


def test_the_sweep_summary_run_holds_the_table_and_sweep_yaml(offline_sweep):
    sweep_dir, record = offline_sweep
    trial_ids = [row["run"] for row in record["trials"]]
    (summary,) = [read_run(path) for run_id, path in offline_runs(sweep_dir).items()
                  if run_id not in trial_ids]
    assert summary.job_type == "sweep-summary" and summary.tags == [sweep_dir.name]
    assert summary.summary["totals/finished"] == 2 and summary.exit_code == 0
    assert summary.config["sweep_id"] == sweep_dir.name
    (table_file,) = (offline_runs(sweep_dir)[summary.run_id] / "files").rglob("*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["run", "params", "status", "metric", "gpu_peak_mb",
                                "host_peak_mb", "residual_mb", "wait_s", "clean",
                                "processes_killed", "escapees_killed", "energy_j",
                                "util_mean_pct", "util_peak_pct"]
    assert [row[0] for row in table["data"]] == trial_ids
    by_run = {row[0]: row for row in table["data"]}
    for row in record["trials"]:
        memory = yaml.safe_load((sweep_dir / row["run"] / "memory.yaml").read_text())
        assert by_run[row["run"]][1:] == [
            json.dumps(row["params"], sort_keys=True), "finished", memory["metric"]["best"],
            None, memory["host"]["peak_rss_mb"], None, 0.0, True,
            memory["cleanup"]["processes_killed"], memory["cleanup"]["escapees_killed"],
            None, None, None]  # energy and utilization: no GPU here
    artifacts = {a["name"]: a for a in summary.artifacts}
    name = f"sweep-{sweep_dir.name}-{agent_key(str(sweep_dir))}"
    assert artifacts[name]["files"] == ["sweep.yaml"]
    assert artifacts[name]["type"] == "sweep-record"
    staged = list((sweep_dir / "wandb" / "data").rglob("*"))
    assert staged, "artifact files are staged inside the sweep dir, for wandb sync"


def auto_project(program_path):
    """The project ``wandb sweep`` would name after the program's git repository (run from
    the repository root, as the sweeps here are)."""
    code = ("from wandb.util import auto_project_name; "
            f"print(auto_project_name({program_path!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip()


def test_without_a_project_every_run_lands_in_wandb_sweeps_project(offline_sweep):
    """wandb's own fallback names a project after the cwd and program (and a different one
    for the summary run); the orchestrator resolves one for all of them instead, as
    ``wandb sweep`` would: here, after the git repository and the program's directory."""
    sweep_dir, _ = offline_sweep
    runs = [read_run(path) for path in offline_runs(sweep_dir).values()]
    expected = auto_project(program("quadratic.py"))
    assert expected not in ("", "uncategorized") or not (ROOT / ".git").exists()
    assert len(runs) == 3 and {run.project for run in runs} == {expected}
    header = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["sweep"]
    assert header["project"] == expected


def test_project_option_puts_trials_and_summary_in_that_project(write_sweep, tmp_path):
    config = quadratic_grid(project="from-yaml",
                            parameters={"x": {"value": 3}, "epochs": {"value": 1}})
    sweep_dir, _ = sweep(write_sweep(config), tmp_path / "log", "--project", "audproj",
                         WANDB_MODE="offline")
    runs = [read_run(path) for path in offline_runs(sweep_dir).values()]
    assert sorted(run.job_type for run in runs) == ["sweep-summary", "trial"]
    assert {run.project for run in runs} == {"audproj"}


def test_wandb_disabled_writes_no_run_and_complete_records(write_sweep, tmp_path):
    sweep_dir, record = sweep(write_sweep(quadratic_grid()), tmp_path / "log",
                              WANDB_MODE="disabled")
    assert not (sweep_dir / "wandb").exists()
    assert not (sweep_dir / "summary-run.log").exists()
    assert record["totals"]["finished"] == 2
    for row in record["trials"]:
        memory = yaml.safe_load((sweep_dir / row["run"] / "memory.yaml").read_text())
        assert memory["metric"]["reports"] == 3 and memory["host"]["peak_rss_mb"] > 0


def test_wandb_sync_finds_every_run_of_the_sweep(offline_sweep, tmp_path):
    """``wandb sync <sweep-dir>/wandb`` would upload the trials and the summary run (the
    upload itself needs a network and is not tested; --dry-run lists what it would sync)."""
    sweep_dir, record = offline_sweep
    env = dict(os.environ, HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run",
                           str(sweep_dir / "wandb")], env=env, capture_output=True,
                          text=True, timeout=120)
    listed = proc.stdout + proc.stderr
    assert "Would sync 3 run(s)" in listed, listed
    for row in record["trials"]:
        assert f"run-{row['run']}.wandb" in listed


def test_a_local_sweep_never_hosts_wandb_in_the_orchestrator(write_sweep, tmp_path):
    """The trials' runs and the summary run live in subprocesses: the orchestrator process
    never sets wandb up, never starts its service and never imports torch."""
    sweep_file = write_sweep(quadratic_grid(parameters={"x": {"value": 3},
                                                        "epochs": {"value": 2}}))
    code = ("import sys, psutil; from gpusweep.cli import main; "
            f"rc = main(['--sweep-config', {str(sweep_file)!r}, '--log-dir', "
            f"{str(tmp_path / 'log')!r}, '--quiet']); "
            "from wandb.sdk import wandb_setup; "
            "print('SETUP', wandb_setup._singleton is not None); "
            "summary = [p for p in psutil.Process().children() "
            "           if 'gpusweep.wb.summary' in ' '.join(p.cmdline())]; "
            "theirs = {c.pid for p in summary for c in [p, *p.children(recursive=True)]}; "
            "print('SERVICE', [p.name() for p in psutil.Process().children(recursive=True) "
            "                  if p.pid not in theirs]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    env = dict(os.environ, WANDB_MODE="offline")
    env.pop("WANDB_SWEEP_ID", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "SETUP False" in lines and "SERVICE []" in lines and "TORCH False" in lines
    (sweep_dir,) = (tmp_path / "log").iterdir()
    wait_for_summary(sweep_dir)
    assert len(offline_runs(sweep_dir)) == 2  # the trial's run and the summary run


def test_trials_ending_at_their_start_still_have_their_run(write_sweep, tmp_path):
    """A stop landing inside the wandb.init() of the first report is held until the run
    exists (then honoured: exit 143); a trial failing before any report gets a run from the
    summary step, failed (exit 1), with its params."""
    config = {"name": "early", "program": program("early_end.py"), "method": "grid",
              "parameters": {"mode": {"values": ["stop_in_init", "raise_early"]}}}
    sweep_dir, record = sweep(write_sweep(config), tmp_path / "log", WANDB_MODE="offline")
    runs = offline_runs(sweep_dir)
    by_mode = {row["params"]["mode"]: row for row in record["trials"]}
    assert {row["status"] for row in record["trials"]} == {"failed"}
    stopped = read_run(runs[by_mode["stop_in_init"]["run"]])
    assert [h["loss"] for h in stopped.history] == [1.0] and stopped.exit_code == 143
    assert "not acted on" not in (sweep_dir / by_mode["stop_in_init"]["run"]
                                  / "output.log").read_text()
    early = read_run(runs[by_mode["raise_early"]["run"]])
    assert early.config == {"mode": "raise_early"} and early.exit_code == 1
    assert (early.project, early.job_type, early.tags) == (
        auto_project(program("early_end.py")), "trial", [sweep_dir.name])
    assert early.summary["gpusweep/status"] == "failed"


def test_a_resumed_sweep_keeps_one_summary_run_with_a_stable_id(write_sweep, tmp_path):
    """Each session writes the agent's summary run again under
    ``<sweep-id>-summary-<agent>``; offline, the earlier session's copy is removed once the
    new one is complete (one run to sync). The orchestrator does not wait for it."""
    sweep_file = write_sweep(quadratic_grid(parameters={"x": {"value": 3},
                                                        "epochs": {"value": 1}}))
    sweep_dir, _ = sweep(sweep_file, tmp_path / "log", WANDB_MODE="offline")
    sweep(sweep_file, tmp_path / "log", "--resume", sweep_dir.name, WANDB_MODE="offline")
    summary_id = f"{sweep_dir.name}-summary-{agent_key(str(sweep_dir))}"
    assert wait_for_summary(sweep_dir)["run"] == summary_id
    copies = list((sweep_dir / "wandb").glob(f"offline-run-*-{summary_id}"))
    assert len(copies) == 1, copies
    summary = read_run(copies[0])
    assert summary.run_id == summary_id and summary.job_type == "sweep-summary"
    assert summary.exit_code == 0 and summary.summary["totals/finished"] == 1
    assert len(offline_runs(sweep_dir)) == 2  # the trial's run and the one summary run


def test_a_trial_run_made_offline_is_recorded_when_the_sweep_disabled_wandb(
        write_sweep, run_sweep, tmp_path):
    """With WANDB_MODE=disabled for the sweep, a script that asks for an offline run itself
    still writes one: memory.yaml says where, so ``sync`` finds it."""
    script = tmp_path / "own_offline.py"
    script.write_text("import wandb\nrun = wandb.init(mode='offline')\n"
                      "wandb.log({'loss': 1.0})\nrun.finish()\n")
    sweep_file = write_sweep({"name": "own-offline", "program": str(script), "method": "grid",
                              "metric": {"name": "loss", "goal": "minimize"},
                              "parameters": {"x": {"value": 1}}})
    result = run_sweep(sweep_file, wandb_mode="disabled")
    assert result.returncode == 0, result.proc.stderr
    (row,) = result.sweep["trials"]
    recorded = result.memory(row["run"])["wandb_run"]
    assert recorded == {"id": row["run"], "dir": str(offline_runs(result.sweep_dir)[row["run"]])}
    assert read_run(recorded["dir"]).history[0]["loss"] == 1.0
