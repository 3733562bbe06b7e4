"""A cloud sweep's trials: the W&B server proposes params and decides the stops.

One W&B agent is registered per slot (:class:`~gpusweep.wb.agent_channel.AgentChannel`), as if
``wandb agent`` ran once per slot: each heartbeats on its own thread and gets its own
``run`` commands, so ``--slots``/``--gpus`` run several server runs at once. A ``run`` that
arrives while its slot is still busy is queued (and reported running), never blocking.
Everything else is the local session's: lock, signals, baseline, every guard, finishing in
worker threads, records, summary.

What differs from a local sweep, and why:

- a ``stop`` is recorded ``stopped_early`` or ``stopped`` by :mod:`gpusweep.wb.server_stop`'s rule;
- ``exit`` ends every trial (``killed``, as ``wandb agent``'s ``_command_exit`` kills its
  runs) and then the agent;
- ``isolation.oom.retry`` does not re-run an OOM trial: the server proposes every run, and a
  run it did not hand out would not be part of its search. The OOM is recorded (and told at
  start); the server's next proposal goes on;
- after each trial, what only we know (residual memory, the wait, cleanup) goes into the
  run's summary through the public API, in the trial's worker thread.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gpusweep.config import SweepSpec
from gpusweep.errors import EXIT_BAD_INPUT, EXIT_SWEEP_GONE, SweepAborted
from gpusweep.records import TrialOrigin, TrialRecord
from gpusweep.records.layout import SweepLayout
from gpusweep.source import Pending, Session
from gpusweep.status import StopReason
from gpusweep.wb.agent_channel import POLL_INTERVAL_S, AgentChannel
from gpusweep.wb.server_stop import server_stop_reason

if TYPE_CHECKING:
    from gpusweep.slots import Slot
    from gpusweep.trialrun import RunningTrial

SERVER_STOP_TEXT = {StopReason.HYPERBAND: "stopped by the sweep's early termination "
                    "(W&B server)", StopReason.SERVER: "stopped by the W&B server"}


class CloudSource:
    """The W&B server's commands, for a sweep it knows."""

    server_runs = True  # the server makes every trial's run: no stand-ins to write

    def __init__(self, *, api: Any, sweep_id: str, spec: SweepSpec, entity: str | None,
                 project: str | None, slots: int, resume: bool = False,
                 trial_mode: str = "online", interval_s: float = POLL_INTERVAL_S,
                 display: Any = None) -> None:
        self.api = api
        self.sweep_id = sweep_id
        self.spec = spec
        self.entity = entity
        self.project = project
        self.resume = resume
        self.trial_mode = trial_mode
        self.display = display
        self.channels = [AgentChannel(api, sweep_id, entity, project, interval_s)
                         for _ in range(slots)]
        self.queues: list[list[Pending]] = [[] for _ in range(slots)]
        self.stops: set[str] = set()
        self.exit_requested = False
        self.exit_code: int | None = None
        self.summary_errors: list[str] = []
        self._runner: Session | None = None

    # -- the session's calls ---------------------------------------------------------------
    def restored(self, runner: Session, orphans: list[TrialRecord]) -> None:
        """A restarted agent closes what it left running; the server decides what runs again
        (a run whose agent vanished is the server's to hand out)."""

    def open(self, runner: Session) -> None:
        """Register one agent per slot, then start their heartbeats."""
        self._runner = runner
        if self.spec.isolation.oom.retry and self.display is not None:
            self.display.message("note: isolation.oom.retry is off in cloud mode: the W&B "
                                 "server proposes every run (an OOM is recorded as such)")
        for index, channel in enumerate(self.channels):
            channel.wanted = lambda index=index: self._wanted(index)
            try:
                channel.register()
            except Exception as exc:  # wandb's CommError: the server said no
                raise SweepAborted(f"error: the W&B server refused this agent for sweep "
                                   f"{self.sweep_id}: {exc}", EXIT_BAD_INPUT) from None
        for channel in self.channels:
            channel.start()

    def poll(self, runner: Session) -> None:
        for index, channel in enumerate(self.channels):
            while not channel.commands.empty():
                self._take(index, channel.commands.get_nowait())
        if any(c.gone for c in self.channels) and self.exit_code is None:
            self.exit_code = EXIT_SWEEP_GONE
            self._say("the W&B sweep was deleted or this agent is unknown to the server: "
                      "running trials end, then the agent stops")

    def next_trial(self, runner: Session, slot: Slot) -> Pending | None:
        queue = self.queues[slot.index]
        if not queue or self.exit_requested or self._count_reached(runner):
            return None
        return queue.pop(0)

    def put_back(self, slot: Slot, pending: Pending) -> None:
        self.queues[slot.index].insert(0, pending)

    def stop_for(self, runner: Session, trial: RunningTrial,
                 new_metric: bool) -> tuple[StopReason, str | None] | None:
        if self.exit_requested:
            return StopReason.INTERRUPT, "the W&B server sent exit"
        if trial.run_id not in self.stops:
            return None
        reason = server_stop_reason(self.spec.early_terminate, len(trial.events.metric_values))
        return reason, SERVER_STOP_TEXT[reason]

    def started(self, slot: Slot, trial: RunningTrial) -> None:
        self.channels[slot.index].hold(trial.run_id)

    def ended(self, runner: Session, slot: Slot | None, record: TrialRecord) -> None:
        self.stops.discard(record.run)
        for channel in self.channels if slot is None else [self.channels[slot.index]]:
            channel.release(record.run)

    def after_finish(self, record: TrialRecord) -> None:
        """What only the orchestrator knows, into the run's summary (worker thread).

        wandb-core retries 5xx answers and timeouts itself (exponential back-off, up to the
        API's timeout); what still fails is one warning, never the end of the agent."""
        path = "/".join(p for p in (self.entity, self.project, record.run) if p)
        values = {"memory/residual_mb": record.gpu.residual_mb,
                  "memory/wait_s": record.cleanup.wait_s, "cleanup/clean": record.cleanup.clean,
                  "cleanup/processes_killed": record.cleanup.processes_killed,
                  "cleanup/escapees_killed": record.cleanup.escapees_killed,
                  "gpusweep/status": record.status.value}
        try:
            self.api.run(path).summary.update(values)
        except Exception as exc:
            message = f"could not update the W&B summary of {path}: {type(exc).__name__}"
            self.summary_errors.append(message)
            self._say(f"warning: {message}")

    def over(self, runner: Session) -> bool:
        if self.exit_requested or self.exit_code is not None:
            return not any(self.queues)
        return self._count_reached(runner)

    def trial_environ(self, base: dict[str, str]) -> dict[str, str]:
        """Trials run online so the server sees their history (its Bayes search and
        Hyperband need it), with the server's sweep id, entity and project."""
        env = dict(base, WANDB_MODE=self.trial_mode, WANDB_SWEEP_ID=self.sweep_id)
        for name, value in (("WANDB_ENTITY", self.entity), ("WANDB_PROJECT", self.project)):
            if value:
                env[name] = value
        return env

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    # -- commands --------------------------------------------------------------------------
    def _take(self, index: int, command: dict[str, Any]) -> None:
        kind = command.get("type")
        run_id = command.get("run_id")
        if kind in ("run", "resume") and isinstance(run_id, str):
            args = command.get("args") or {}
            params = {k: v.get("value") if isinstance(v, dict) else v for k, v in args.items()}
            self.queues[index].append(Pending(params, TrialOrigin(kind), run_id=run_id))
            self.channels[index].hold(run_id)
        elif kind == "stop" and isinstance(run_id, str):
            queued = [p for p in self.queues[index] if p.run_id == run_id]
            if queued:  # never started: drop it; the next heartbeat no longer reports it
                self.queues[index].remove(queued[0])
                self.channels[index].release(run_id)
            elif run_id in self.channels[index].run_states():  # re-sent until it is gone
                self.stops.add(run_id)
        elif kind == "exit":
            self.exit_requested = True
            for channel, queue in zip(self.channels, self.queues, strict=True):
                for pending in queue:
                    channel.release(str(pending.run_id))
                queue.clear()
        else:
            self._say(f"warning: unknown command from the W&B server: {kind!r}")

    def _wanted(self, index: int) -> bool:
        """Whether slot ``index``'s agent should ask for a run (its heartbeat thread)."""
        runner = self._runner
        if runner is None or self.exit_requested or self.exit_code is not None:
            return False
        queued = sum(len(q) for q in self.queues)
        count = runner.options.count
        return count is None or runner.launched + queued < count

    def _count_reached(self, runner: Session) -> bool:
        count = runner.options.count
        return count is not None and runner.launched >= count

    def _say(self, text: str) -> None:
        if self.display is not None:
            self.display.message(text)


def trial_wandb_mode(environ: dict[str, str]) -> tuple[str, str | None]:
    """The trials' ``WANDB_MODE`` in cloud mode, and a warning when it is not online.

    Online unless the agent was started with ``WANDB_MODE=offline`` or ``disabled``: then
    the server sees no history (its Bayes search and Hyperband act blind) until the runs
    are synced, which is said once at start.
    """
    mode = environ.get("WANDB_MODE", "online")
    if mode in ("offline", "disabled", "dryrun"):
        return mode, (f"warning: WANDB_MODE={mode}: the trials' runs stay {mode}; the W&B "
                      "server sees none of their metrics (Bayes and Hyperband act blind)")
    return "online", None


def journal_exists(log_dir: str, sweep_id: str) -> bool:
    return os.path.exists(SweepLayout.of(log_dir, sweep_id).journal)
