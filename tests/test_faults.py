"""The fault suite: every way a trial can go wrong, through tools/sweep.py, for real.

Each test asserts the status the records give, that the sweep went on, complete records and
that no process of any trial is left.
"""

import resource
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from conftest import ROOT, fault, journal_tokens, processes_with_token

pytestmark = pytest.mark.slow


def sweep(program_file, parameters, **isolation):
    isolation.setdefault("stop", {"grace_s": 1})
    return {
        "program": fault(program_file),
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": parameters,
        "isolation": isolation,
    }


def no_leftovers(result):
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


def test_cuda_oom_is_classified_and_retried_with_a_smaller_batch(write_sweep, run_sweep):
    config = sweep("oom.py", {"batch_size": {"values": [256]}},
                   oom={"retry": True, "key": "batch_size", "factor": 0.5, "max_retries": 3})
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    rows = result.sweep["trials"]
    assert [(r["params"]["batch_size"], r["status"]) for r in rows] == [
        (256, "oom"), (128, "oom"), (64, "finished")]
    assert "retry_of" not in rows[0]
    assert rows[1]["retry_of"] == rows[0]["run"] and rows[2]["retry_of"] == rows[1]["run"]
    first = result.memory(rows[0]["run"])
    assert "OutOfMemoryError" in first["oom_line"] and "Tried to allocate" in first["oom_line"]
    assert "torch_peak_allocated_mb" in first["gpu"]  # null on CPU, the figure on a GPU
    assert result.sweep["totals"]["oom"] == 2 and result.sweep["totals"]["finished"] == 1
    no_leftovers(result)


def test_oom_without_the_trial_api_is_found_in_the_output(write_sweep, run_sweep):
    config = sweep("oom.py", {"batch_size": {"values": [256, 32]}})
    config["command"] = ["${env}", "${interpreter}", "${program}", "--no-api", "${args}"]
    result = run_sweep(write_sweep(config))
    statuses = [(r["params"]["batch_size"], r["status"]) for r in result.sweep["trials"]]
    assert statuses == [(256, "oom"), (32, "finished")]  # retry is off by default
    (oom_record, _) = result.memories()
    assert oom_record["oom_line"].startswith("torch.OutOfMemoryError: CUDA out of memory")
    no_leftovers(result)


def test_rss_hog_is_stopped_at_the_limit_as_host_oom(write_sweep, run_sweep):
    config = sweep("rss_hog.py", {"x": {"values": [1]}}, limits={"rss_mb": 400})
    result = run_sweep(write_sweep(config))
    (record,) = result.memories()
    assert record["status"] == "host_oom"
    assert "isolation.limits.rss_mb 400" in record["reason"]
    assert 400 < record["host"]["peak_rss_mb"] < 1500  # stopped near the limit, not at 6 GB
    no_leftovers(result)


def test_sigkill_we_did_not_send_with_little_memory_is_failed(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("sigkill_self.py", {"x": {"values": [1]}})))
    (record,) = result.memories()
    assert record["status"] == "failed" and record["signal"] == "SIGKILL"
    assert record["reason"] is None


def test_stall_dumps_every_thread_stack_then_stops(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("stall.py", {"x": {"values": [1]}}, stall_s=2)))
    (record,) = result.memories()
    assert record["status"] == "stalled" and "isolation.stall_s" in record["reason"]
    log = (result.sweep_dir / record["run"] / "output.log").read_text()
    assert "most recent call first" in log and "stall.py" in log  # faulthandler's dump
    no_leftovers(result)


def test_stall_without_the_trial_api_still_gets_its_stacks_dumped(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("stall_plain.py", {"x": {"values": [1]}}, stall_s=2)))
    (record,) = result.memories()
    assert record["status"] == "stalled"
    log = (result.sweep_dir / record["run"] / "output.log").read_text()
    assert "most recent call first" in log and "wait_forever" in log
    no_leftovers(result)


def test_leak_per_step_is_suspected_and_profiled(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("leak.py", {"steps": {"values": [10]}})),
                       "--profile-leaks")
    (record,) = result.memories()
    assert record["status"] == "finished"
    assert record["leak"]["suspected"] and record["leak"]["rss_mb_per_step"] > 1.5
    leaks = (result.sweep_dir / record["run"] / "leaks.txt").read_text().splitlines()
    top = [line for line in leaks if not line.startswith("#")][0]
    assert "leak.py" in top and "size=" in top  # the leaking line is first: largest growth


def test_no_leak_suspected_for_a_flat_trial(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("leak.py", {"steps": {"values": [10]},
                                                     "leak_mb": {"values": [0]}})))
    (record,) = result.memories()
    assert record["status"] == "finished" and not record["leak"]["suspected"]


def test_segfault_is_failed_with_sigsegv(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("segfault.py", {"x": {"values": [1]}})))
    assert result.returncode == 0
    (record,) = result.memories()
    assert record["status"] == "failed" and record["signal"] == "SIGSEGV"
    assert record["exit_code"] == -signal.SIGSEGV
    assert "about to segfault" in record["error"]


def test_sigterm_ignorer_ends_as_timeout_in_bounded_time(write_sweep, run_sweep):
    config = sweep("ignore_term.py", {"x": {"values": [1]}}, timeout_s=1)
    result = run_sweep(write_sweep(config))
    (record,) = result.memories()
    assert record["status"] == "timeout" and record["signal"] == "SIGKILL"
    assert record["cleanup"]["processes_killed"] == 1
    assert record["duration_s"] < 1 + 1 + 3  # timeout_s + grace_s + a few seconds
    no_leftovers(result)


def test_setsid_escapee_holding_memory_is_found_by_token(write_sweep, run_sweep):
    result = run_sweep(write_sweep(sweep("escapee.py", {"x": {"values": [1]}})))
    (record,) = result.memories()
    assert record["status"] == "finished"
    assert record["cleanup"]["escapees_killed"] >= 1 and record["cleanup"]["clean"]
    escapee = int((result.sweep_dir / record["run"] / "escapee.pid").read_text())
    assert not psutil.pid_exists(escapee) or \
        psutil.Process(escapee).status() == psutil.STATUS_ZOMBIE
    no_leftovers(result)


def test_crash_at_start_stops_the_sweep_with_exit_4(write_sweep, run_sweep):
    config = sweep("crash_at_start.py", {"x": {"values": list(range(30))}})
    result = run_sweep(write_sweep(config))
    assert result.returncode == 4
    assert result.sweep["totals"]["failed"] == 5  # not 30
    assert result.sweep["sweep"]["state"] == "aborted"
    assert "isolation.flapping" in result.proc.stderr
    assert "/data/prices does not exist" in result.proc.stderr  # the last trial's error tail


def test_flapping_can_be_turned_off(write_sweep, run_sweep):
    config = sweep("crash_at_start.py", {"x": {"values": list(range(7))}},
                   flapping={"enabled": False})
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0 and result.sweep["totals"]["failed"] == 7


def test_second_orchestrator_on_the_same_sweep_is_refused(write_sweep, tmp_path):
    config = sweep("stall.py", {"x": {"values": [1]}}, stall_s=30)
    sweep_file = write_sweep(config)
    log_dir = tmp_path / "log"
    first = subprocess.Popen([sys.executable, "tools/sweep.py", "--sweep-config",
                              str(sweep_file), "--log-dir", str(log_dir), "--quiet"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sweep_dir = _wait_for(lambda: [p for p in log_dir.glob("*/*/events.jsonl")])[0]
        sweep_id = sweep_dir.parent.parent.name
        second = subprocess.run([sys.executable, "tools/sweep.py", "--resume", sweep_id,
                                 "--log-dir", str(log_dir), "--quiet"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"another orchestrator (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=30) == 130


def test_stale_lock_of_a_dead_orchestrator_is_taken_over(write_sweep, tmp_path):
    sweep_file = write_sweep(sweep("stall.py", {"x": {"values": [1]}}, stall_s=1))
    log_dir = tmp_path / "log"
    command = [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
               "--log-dir", str(log_dir), "--quiet"]
    first = subprocess.Popen(command, cwd=ROOT)
    events = _wait_for(lambda: [p for p in log_dir.glob("*/*/events.jsonl")])[0]
    first.kill()  # SIGKILL: the lock file stays behind with a dead pid in it
    first.wait(timeout=30)
    sweep_dir = events.parent.parent
    assert (sweep_dir / "lock").exists()
    resumed = subprocess.run(command + ["--resume", sweep_dir.name], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert processes_with_token(journal_tokens(sweep_dir)) == []


def test_records_that_cannot_be_written_stop_the_sweep_cleanly(write_sweep, tmp_path):
    """A file-size limit makes every write past it fail (EFBIG), like a full disk."""
    config = sweep("leak.py", {"steps": {"values": [1]}, "leak_mb": {"values": list(range(40))}})
    sweep_file = write_sweep(config)
    log_dir = tmp_path / "log"

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
                           "--log-dir", str(log_dir), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "cannot write the sweep's records" in proc.stderr and "Traceback" not in proc.stderr
    (sweep_dir,) = log_dir.iterdir()
    memories = list(sweep_dir.glob("*/memory.yaml"))
    assert 0 < len(memories) < 40
    for path in memories:  # every record written before the failure is whole and valid
        assert yaml.safe_load(path.read_text())["status"] == "finished"
    assert processes_with_token(journal_tokens(sweep_dir)) == []


def _wait_for(find, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")
