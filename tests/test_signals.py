"""Signals on both sides, in process: the orchestrator's stop flag, the trial's SIGTERM."""

import signal
import threading

import pytest

from gpusweep import signals
from gpusweep.bootstrap import _gpusweep_signals as child_signals
from gpusweep.status import StopReason


@pytest.fixture
def sigterm_restored():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_preempts_and_the_others_interrupt():
    assert signals.stop_reason(signal.SIGTERM) is StopReason.PREEMPT
    assert signals.stop_reason(signal.SIGINT) is StopReason.INTERRUPT
    assert signals.stop_reason(signal.SIGHUP) is StopReason.INTERRUPT


def test_trap_calls_back_with_the_signal_and_restore_puts_the_old_handlers_back():
    before = {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS}
    got = []
    previous = signals.trap(got.append)
    try:
        signal.raise_signal(signal.SIGHUP)
        signal.raise_signal(signal.SIGTERM)
    finally:
        signals.restore(previous)
    assert got == [signal.SIGHUP, signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS} == before


def test_trap_outside_the_main_thread_installs_nothing():
    result = []
    thread = threading.Thread(target=lambda: result.append(signals.trap(print)))
    thread.start()
    thread.join(10)
    assert result == [{}]


def test_the_trial_acts_on_sigterm_once(sigterm_restored):
    """A second SIGTERM during the unwinding of the first is ignored, never a second exit."""
    calls = []

    def action(signum):
        calls.append(signum)
        signal.raise_signal(signal.SIGTERM)  # the second one arrives during the cleanup

    child_signals.on_sigterm(action)
    signal.raise_signal(signal.SIGTERM)
    assert calls == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_a_programs_own_sigterm_handler_wins(sigterm_restored):
    def own(signum, frame):
        pass

    signal.signal(signal.SIGTERM, own)
    assert child_signals.on_sigterm(print, unless_handled=True) is None
    assert signal.getsignal(signal.SIGTERM) is own


def test_a_held_sigterm_reaches_the_previous_handler_after_the_block(sigterm_restored):
    got = []
    signal.signal(signal.SIGTERM, lambda signum, frame: got.append("handler"))
    with child_signals.SigtermHeld():
        signal.raise_signal(signal.SIGTERM)
        got.append("block went on")
    assert got == ["block went on", "handler"]


def test_nothing_is_redelivered_when_no_sigterm_came(sigterm_restored):
    got = []
    handler = lambda signum, frame: got.append(signum)  # noqa: E731
    signal.signal(signal.SIGTERM, handler)
    with child_signals.SigtermHeld():
        pass
    assert got == [] and signal.getsignal(signal.SIGTERM) is handler


def test_a_deadline_raises_in_its_block_then_cancels_and_puts_the_handler_back():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(TimeoutError, match="not written within 5 s"), \
            signals.deadline(5, "not written within 5 s"):
        signal.raise_signal(signal.SIGALRM)  # what the alarm does once 5 s have passed
    assert signal.getsignal(signal.SIGALRM) is before and signal.alarm(0) == 0
    with signals.deadline(60, "never"):
        pass
    assert signal.getsignal(signal.SIGALRM) is before and signal.alarm(0) == 0


def test_the_trials_sigterm_handler_is_put_back_by_the_signals_module(sigterm_restored):
    def mine(signum, frame):
        pass

    signal.signal(signal.SIGTERM, mine)
    previous = child_signals.on_sigterm(print)
    assert previous is mine and signal.getsignal(signal.SIGTERM) is not mine
    child_signals.restore_sigterm(previous)
    assert signal.getsignal(signal.SIGTERM) is mine
    child_signals.restore_sigterm(None)  # on_sigterm installed nothing: nothing to put back
    assert signal.getsignal(signal.SIGTERM) is mine
