"""The failure decisions as pure functions: OOM, back-off, host memory, stalls, leaks,
flapping. No processes, no GPU."""

import os
import signal
import subprocess

import pytest

from gpusweep.flapping import is_flapping
from gpusweep.guards import (
    Activity,
    StallWindow,
    host_memory_reason,
    oom_killer_suspected,
    stalled_for,
)
from gpusweep.isolation import FlappingConfig, LeakConfig, LimitsConfig, OomConfig
from gpusweep.leak import leak_verdict, slope
from gpusweep.oom import backoff_params, oom_line
from gpusweep.status import StopReason, TrialStatus, classify

# -- CUDA OOM ------------------------------------------------------------------------------


def test_oom_from_the_reported_exception_type():
    events = [{"type": "OutOfMemoryError", "message": "CUDA out of memory. Tried to allocate"}]
    assert oom_line(events, "").startswith("OutOfMemoryError: CUDA out of memory")


@pytest.mark.parametrize("line", [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB",
    "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB",
    "RuntimeError: CUDA out of memory. Tried to allocate 1.00 GiB",
    "RuntimeError: CUDA error: out of memory",
    "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
])
def test_oom_from_the_output(line):
    output = f"Traceback (most recent call last):\n  File \"x.py\", line 3\n{line}\n"
    assert oom_line([], output) == line


@pytest.mark.parametrize("line", [
    "ValueError: out of range",
    "RuntimeError: CUDA error: device-side assert triggered",
    "MemoryError",
    "epoch 3 memory 2100 MB",
])
def test_other_failures_are_not_oom(line):
    assert oom_line([{"type": "ValueError", "message": line}], line) is None


def test_backoff_halves_and_rounds_and_stops_at_min():
    config = OomConfig(retry=True, key="batch_size", factor=0.5, min=16)
    assert backoff_params({"batch_size": 100, "lr": 0.1}, config) == {"batch_size": 50,
                                                                       "lr": 0.1}
    assert backoff_params({"batch_size": 25}, config) == {"batch_size": 16}
    assert backoff_params({"batch_size": 16}, config) is None
    assert backoff_params({"lr": 0.1}, config) is None


def test_backoff_with_dotted_and_nested_keys():
    config = OomConfig(retry=True, key="train.batch_size")
    assert backoff_params({"train.batch_size": 64}, config) == {"train.batch_size": 32}
    nested = {"train": {"batch_size": 64, "lr": 1.0}}
    assert backoff_params(nested, config) == {"train": {"batch_size": 32, "lr": 1.0}}
    assert nested["train"]["batch_size"] == 64  # the original params are untouched


# -- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, status", [
    ((1, None, True, False), TrialStatus.OOM),
    ((-9, None, False, True), TrialStatus.HOST_OOM),
    ((-9, None, False, False), TrialStatus.FAILED),
    ((0, None, True, False), TrialStatus.FINISHED),  # caught its own OOM and went on
    ((-15, StopReason.HOST_MEMORY, False, False), TrialStatus.HOST_OOM),
    ((-15, StopReason.STALL, False, False), TrialStatus.STALLED),
])
def test_classify_failures(args, status):
    assert classify(*args) is status


# -- host memory -----------------------------------------------------------------------------


def test_host_memory_guards():
    limits = LimitsConfig(rss_mb=1000, min_available_mb=512)
    assert host_memory_reason(900, 8000, limits) is None
    assert "limits.rss_mb 1000" in host_memory_reason(1001, 8000, limits)
    assert "min_available_mb 512" in host_memory_reason(100, 400, limits)
    assert host_memory_reason(5000, 8000, LimitsConfig()) is None  # no tree limit by default


def test_oom_killer_needs_a_sigkill_we_did_not_send_and_memory_gone():
    kill = -signal.SIGKILL
    assert oom_killer_suspected(kill, False, 20000, 3000, 24000)  # tree RSS near the limit
    assert oom_killer_suspected(kill, False, 2000, 300, 24000)  # machine nearly out
    assert not oom_killer_suspected(kill, False, 2000, 12000, 24000)  # plenty left
    assert not oom_killer_suspected(kill, True, 20000, 300, 24000)  # we sent it
    assert not oom_killer_suspected(-signal.SIGSEGV, False, 20000, 300, 24000)


# -- stalls ----------------------------------------------------------------------------------


def test_stall_needs_both_silence_and_idleness():
    assert stalled_for(now=100, last_activity=60, cpu_used_in_window_s=0.1, stall_s=30)
    assert not stalled_for(now=100, last_activity=80, cpu_used_in_window_s=0.0, stall_s=30)
    assert not stalled_for(now=100, last_activity=60, cpu_used_in_window_s=25, stall_s=30)


def watch(window, readings):
    """Feed (t, cpu_s, gpu_tree_mb, gpu_util) readings; the verdict after each."""
    verdicts = []
    for t, cpu, tree_mb, util in readings:
        window.observe(Activity(t, cpu, tree_mb is not None, tree_mb, util))
        verdicts.append(window.verdict())
    return verdicts


def test_a_silent_idle_tree_is_stalled_after_stall_s_not_before():
    verdicts = watch(StallWindow(30, start=0), [(t, 1.0, None, None) for t in range(0, 41)])
    assert verdicts[:30] == [None] * 30 and all(verdicts[30:])
    assert "no report, 0.00 s of CPU in the whole tree in the last 30 s" in verdicts[30]


def test_a_report_or_cpu_keeps_a_trial_alive():
    window = StallWindow(30, start=0)
    watch(window, [(t, 1.0, None, None) for t in range(0, 25)])
    window.reported(25)
    assert not any(watch(window, [(t, 1.0, None, None) for t in range(25, 55)]))
    computing = StallWindow(30, start=0)  # one core's worth now and then: not idle
    assert not any(watch(computing, [(t, t * 0.5, None, None) for t in range(0, 100)]))


def test_gpu_activity_keeps_a_trial_alive_and_unknown_is_not_idle():
    busy = [(t, 1.0, 500.0, 40.0 if t % 20 == 0 else 0.0) for t in range(0, 100)]
    assert not any(watch(StallWindow(30, start=0), busy))
    growing = [(t, 1.0, 500.0 + (t // 10) * 2, 0.0) for t in range(0, 100)]
    assert not any(watch(StallWindow(30, start=0), growing))
    unknown = [(t, 1.0, 500.0, None) for t in range(0, 100)]  # holds GPU memory, NVML blind
    assert not any(watch(StallWindow(30, start=0), unknown))
    idle = [(t, 1.0, 500.0, 0.0) for t in range(0, 40)]  # memory held, device idle
    verdicts = watch(StallWindow(30, start=0), idle)
    assert verdicts[29] is None and "no GPU activity" in verdicts[30]


def test_the_window_keeps_few_readings_whatever_the_rate():
    window = StallWindow(1800, start=0)
    watch(window, [(t / 10, 0.0, None, None) for t in range(0, 40000)])  # 10 Hz, 4000 s
    assert len(window._cpu) <= 52
    assert window.due(4000.9) and not window.due(4000.5)  # a reading a second at most


# -- leaks -----------------------------------------------------------------------------------


def test_slope_separates_a_leak_from_noise():
    noise = [300 + 0.01 * (i % 3) for i in range(20)]
    leak = [300 + 2.0 * i for i in range(20)]
    assert abs(slope(noise, warmup=2, min_points=4)) < 0.05
    assert slope(leak, warmup=2, min_points=4) == pytest.approx(2.0)


def test_warmup_growth_is_not_a_leak():
    values = [100, 400, 700] + [700.0] * 10  # big start-up allocations, then flat
    verdict = leak_verdict(values, [None] * 13, LeakConfig(warmup_steps=3))
    assert not verdict.suspected and verdict.gpu_mb_per_step is None


def test_gpu_leak_alone_is_suspected():
    verdict = leak_verdict([500.0] * 10, [10.0 * i for i in range(10)], LeakConfig())
    assert verdict.suspected and verdict.gpu_mb_per_step == pytest.approx(10.0)


def test_too_few_points_is_no_verdict():
    verdict = leak_verdict([1.0, 50.0, 100.0], [], LeakConfig(warmup_steps=0, min_points=4))
    assert verdict.rss_mb_per_step is None and not verdict.suspected


# -- flapping --------------------------------------------------------------------------------


def test_flapping_after_max_failures_fast():
    config = FlappingConfig(max_failures=3, window_s=60)
    failed = TrialStatus.FAILED
    assert not is_flapping([(failed, 1.0), (failed, 2.0)], config)
    assert is_flapping([(failed, 1.0), (failed, 2.0), (failed, 3.0)], config)


def test_slow_failures_in_a_row_are_flapping_too():
    """W&B's agent also stops after its first N runs all failed, however slow each was."""
    config = FlappingConfig(max_failures=3, window_s=60)
    failed = TrialStatus.FAILED
    assert not is_flapping([(failed, 100.0), (failed, 200.0)], config)
    assert is_flapping([(failed, 100.0), (failed, 200.0), (failed, 300.0)], config)


def test_no_flapping_once_a_trial_succeeded_or_when_failures_are_slow():
    config = FlappingConfig(max_failures=2, window_s=60)
    failed, ok = TrialStatus.FAILED, TrialStatus.FINISHED
    assert not is_flapping([(ok, 5.0), (failed, 6.0), (failed, 7.0)], config)
    assert not is_flapping([(TrialStatus.TIMEOUT, 90.0), (failed, 100.0), (failed, 200.0)],
                           config)
    assert not is_flapping([(TrialStatus.OOM, 1.0), (TrialStatus.OOM, 2.0)], config)
    assert not is_flapping([(failed, 1.0), (failed, 2.0)], FlappingConfig(enabled=False))


def test_the_sweep_project_is_resolved_in_wandb_sweeps_order(tmp_path):
    """``wandb sweep`` (wandb/cli/cli.py): --project, WANDB_PROJECT, the file's project,
    wandb's settings, then the program's git repository name."""
    from gpusweep.wb.env import resolve_entity, resolve_project

    env = {"WANDB_PROJECT": "from-env"}
    assert resolve_project("cli", "yaml", None, env) == "cli"
    assert resolve_project(None, "yaml", None, env) == "from-env"
    assert resolve_project(None, "yaml", None, {}) == "yaml"
    assert resolve_project(None, None, None, {}, settings_project="settings") == "settings"
    repo = tmp_path / "my-repo"
    (repo / "train").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    program = repo / "train" / "main.py"
    program.write_text("")
    cwd = os.getcwd()
    try:
        os.chdir(repo)
        assert resolve_project(None, None, str(program), {}, settings_project="") == \
            "my-repo-train"
    finally:
        os.chdir(cwd)
    os.chdir(tmp_path)  # outside any git repository: wandb's "uncategorized"
    try:
        assert resolve_project(None, None, "x.py", {}, settings_project="") == "uncategorized"
    finally:
        os.chdir(cwd)
    assert resolve_entity("cli", "yaml", {"WANDB_ENTITY": "env"}) == "cli"
    assert resolve_entity(None, "yaml", {"WANDB_ENTITY": "env"}) == "env"
    assert resolve_entity(None, "yaml", {}) == "yaml"
    assert resolve_entity(None, None, {}, settings_entity="") is None


def test_the_summary_table_carries_the_processes_and_escapees_killed(tmp_path):
    from gpusweep.records import CleanupRecord, SweepHeader, TrialRecord
    from gpusweep.records.writer import write_sweep, write_trial
    from gpusweep.status import TrialStatus
    from gpusweep.wb.summary import COLUMNS, table_rows

    record = TrialRecord(run="r1", params={"x": 1}, status=TrialStatus.STOPPED_EARLY,
                         exit_code=None, signal=None, started="", ended="", duration_s=1.0,
                         cleanup=CleanupRecord(processes_killed=3, escapees_killed=2))
    write_sweep(str(tmp_path / "sweep.yaml"), SweepHeader(
        id="s", name=None, config={}, method="grid", metric=None, started=""), [record], None)
    (tmp_path / "r1").mkdir()
    write_trial(str(tmp_path / "r1" / "memory.yaml"), record)
    (row,) = table_rows(str(tmp_path))
    by_column = dict(zip(COLUMNS, row, strict=True))
    assert (by_column["processes_killed"], by_column["escapees_killed"]) == (3, 2)


def test_the_error_tail_skips_wandbs_footer_and_blank_lines():
    from gpusweep.trialrecord import error_tail

    output = "\n".join([
        "epoch 0 ok", "Traceback (most recent call last):", '  File "t.py", line 3',
        "RuntimeError: boom", "wandb: ", "wandb: Run history:", "wandb: loss ▁",
        "", "wandb: You can sync this run to the cloud by running:",
        "wandb: wandb sync /x/offline-run-1-abc", "wandb: Find logs at: /x/logs", ""])
    assert error_tail(output, 3) == '\n'.join([
        "Traceback (most recent call last):", '  File "t.py", line 3', "RuntimeError: boom"])
    assert error_tail("", 3) == ""


@pytest.mark.parametrize("early_terminate, reports, expected", [
    (None, 10, StopReason.SERVER),  # no early termination: a person, or the sweep's stop
    ({"type": "hyperband", "min_iter": 3}, 2, StopReason.SERVER),  # before the first band
    ({"type": "hyperband", "min_iter": 3}, 3, StopReason.HYPERBAND),
    ({"type": "hyperband", "max_iter": 27, "s": 2}, 2, StopReason.SERVER),  # bands 3, 9
    ({"type": "hyperband", "max_iter": 27, "s": 2}, 3, StopReason.HYPERBAND),
    ({"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3}, 8, StopReason.HYPERBAND),
])
def test_a_stop_from_the_server_is_hyperbands_only_past_its_first_band(
        early_terminate, reports, expected):
    from gpusweep.wb.server_stop import server_stop_reason

    assert server_stop_reason(early_terminate, reports) is expected


def test_stop_reasons_of_the_server_and_of_preemption_have_their_own_status():
    assert classify(-15, StopReason.SERVER) is TrialStatus.STOPPED
    assert classify(-15, StopReason.HYPERBAND) is TrialStatus.STOPPED_EARLY
    assert classify(-15, StopReason.PREEMPT) is TrialStatus.PREEMPTED
    # a trial that marked its own run preempting is not a failure, whatever its exit code
    assert classify(1, None, preempting=True) is TrialStatus.PREEMPTED
    assert classify(1, None) is TrialStatus.FAILED


@pytest.mark.parametrize("argv, expected", [
    (["python", "train.py", "--config_file", "a.yml", "--lr=1"],
     ["python", "train.py", "--config_file", "new.yml", "--lr=1"]),
    (["python", "train.py", "--config_file=a.yml"], ["python", "train.py",
                                                     "--config_file=new.yml"]),
    (["python", "train.py", "--lr=1"], ["python", "train.py", "--lr=1", "--config_file",
                                        "new.yml"]),
])
def test_config_file_replaces_the_commands_value_or_is_appended(argv, expected):
    from gpusweep.process.launcher import with_config_file

    assert with_config_file(argv, "new.yml") == expected


def test_no_trial_environment_keeps_the_orchestrators_wandb_service():
    from gpusweep.wb.env import add_trial_wandb_env

    env = {"WANDB_SERVICE": "3-123-unix-/tmp/wandb-123/socket", "WANDB_API_KEY": "k" * 40}
    add_trial_wandb_env(env, sweep_id="s1", sweep_name=None)
    assert "WANDB_SERVICE" not in env and env["WANDB_API_KEY"] == "k" * 40
