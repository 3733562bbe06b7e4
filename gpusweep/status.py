"""How a trial ended, as an enum, and the pure decision that picks it."""

from __future__ import annotations

import signal
from enum import Enum


class TrialStatus(str, Enum):
    """A trial's outcome. The string values are what the records say."""

    FINISHED = "finished"  # exited 0 on its own
    FAILED = "failed"  # non-zero exit or killed by a signal we did not send
    STOPPED_EARLY = "stopped_early"  # Hyperband asked for it to stop
    TIMEOUT = "timeout"  # ran past isolation.timeout_s
    KILLED = "killed"  # interrupted by us (Ctrl-C, or the orchestrator died)
    OOM = "oom"  # CUDA out of memory
    HOST_OOM = "host_oom"  # host RAM: our limit, the machine's margin, or the OOM killer
    STALLED = "stalled"  # no report and no CPU for isolation.stall_s
    SKIPPED_NO_FIT = "skipped_no_fit"  # predicted not to fit in memory; never started
    STOPPED = "stopped"  # stopped by the W&B server for another reason than early termination
    PREEMPTED = "preempted"  # preempted (SIGTERM to the orchestrator) or marked itself so


class StopReason(str, Enum):
    """Why the orchestrator ended a trial itself."""

    HYPERBAND = "hyperband"
    TIMEOUT = "timeout"
    INTERRUPT = "interrupt"
    HOST_MEMORY = "host_memory"
    STALL = "stall"
    SERVER = "server"  # a stop command from the W&B server, not the sweep's early_terminate
    PREEMPT = "preempt"  # SIGTERM to the orchestrator: a scheduler takes the machine back


_BY_REASON = {
    StopReason.HYPERBAND: TrialStatus.STOPPED_EARLY,
    StopReason.TIMEOUT: TrialStatus.TIMEOUT,
    StopReason.INTERRUPT: TrialStatus.KILLED,
    StopReason.HOST_MEMORY: TrialStatus.HOST_OOM,
    StopReason.STALL: TrialStatus.STALLED,
    StopReason.SERVER: TrialStatus.STOPPED,
    StopReason.PREEMPT: TrialStatus.PREEMPTED,
}

class EngineState(str, Enum):
    """A run's state as W&B's engine takes it: ``sweeps.RunState``'s values (a test holds
    them equal), here so that naming one does not import the engine, which loads on first
    ask (:mod:`gpusweep.engine`)."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    KILLED = "killed"
    CRASHED = "crashed"
    FAILED = "failed"
    PREEMPTED = "preempted"
    PREEMPTING = "preempting"


# What W&B's engine is told about each outcome: Hyperband-stopped runs keep their history
# as finished runs; failed ones count as failed for bayes (worst value).
ENGINE_STATE = {
    TrialStatus.FINISHED: EngineState.FINISHED,
    TrialStatus.FAILED: EngineState.FAILED,
    TrialStatus.STOPPED_EARLY: EngineState.FINISHED,
    TrialStatus.TIMEOUT: EngineState.KILLED,
    TrialStatus.KILLED: EngineState.KILLED,
    TrialStatus.OOM: EngineState.FAILED,
    TrialStatus.HOST_OOM: EngineState.FAILED,
    TrialStatus.STALLED: EngineState.FAILED,
    TrialStatus.SKIPPED_NO_FIT: EngineState.FAILED,
    TrialStatus.STOPPED: EngineState.KILLED,
    TrialStatus.PREEMPTED: EngineState.PREEMPTED,
}


def classify(
    returncode: int | None,
    stop_reason: StopReason | None,
    cuda_oom: bool = False,
    oom_killer: bool = False,
    preempting: bool = False,
) -> TrialStatus:
    """The status of an ended trial.

    Our own reason for stopping it wins; then a trial that marked its run preempting
    (``wandb.mark_preempting()``: it is handing its work back, whatever its exit code); then
    a clean exit; then what the failure was: a CUDA OOM (from its events or output), the
    kernel's OOM killer (a SIGKILL we did not send, with host memory nearly gone), or any
    other failure.
    """
    if stop_reason is not None:
        return _BY_REASON[stop_reason]
    if preempting:
        return TrialStatus.PREEMPTED
    if returncode == 0:
        return TrialStatus.FINISHED
    if cuda_oom:
        return TrialStatus.OOM
    if oom_killer:
        return TrialStatus.HOST_OOM
    return TrialStatus.FAILED


def signal_name(returncode: int | None) -> str | None:
    """``SIGSEGV`` for a process ended by signal 11 (Popen reports it as -11)."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"SIG{-returncode}"
