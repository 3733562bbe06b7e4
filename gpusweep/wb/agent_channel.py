"""One registered W&B sweep agent: its heartbeat thread and the commands the server sends it.

The protocol is wandb's own (``wandb.apis.public.sweeps``: ``_register_agent``,
``_agent_heartbeat``, the calls ``wandb agent`` makes): every ``interval_s`` the agent sends
the states of its runs and gets commands back (``run``, ``resume``, ``stop``, ``exit``).
The heartbeat runs in a thread of its own, so nothing the session does (a tree stop with
its grace period, a slow GPU wait, a trial still running) delays it; commands are queued
for the session's main thread.

Errors: wandb-core already retries a 5xx or a timeout with exponential back-off until the
call's own timeout (60 s for a heartbeat), and ``_agent_heartbeat`` then logs and returns no
commands, so a transient error costs one round, never the agent. A 404 (the sweep was
deleted) raises ``SweepNotFoundError``: the channel stops heartbeating and says so, and the
session lets running trials end, as ``wandb agent`` does.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

# wandb's agent heartbeats every 5 s (wandb_agent.py, Agent.POLL_INTERVAL)
POLL_INTERVAL_S = 5.0


class AgentChannel:
    """A W&B agent registration; ``runs`` are the run ids it holds (queued or running)."""

    def __init__(self, api: Any, sweep_id: str, entity: str | None, project: str | None,
                 interval_s: float = POLL_INTERVAL_S) -> None:
        self.api = api
        self.sweep_id = sweep_id
        self.entity = entity
        self.project = project
        self.interval_s = interval_s
        self.agent_id: str | None = None
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.gone = False  # the server answered 404: the sweep was deleted
        self.errors = 0  # heartbeats that raised (beyond what wandb swallows)
        self.wanted = lambda: True  # whether to ask for work (set by the source)
        self._runs: list[str] = []  # queued first, the running one included
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name="gpusweep-heartbeat")

    def register(self) -> str:
        """Register with the server (raises wandb's error when it refuses)."""
        from wandb.apis.public.sweeps import _register_agent

        agent = _register_agent(self.api, socket.gethostname(), sweep_id=self.sweep_id,
                                entity=self.entity, project=self.project)
        self.agent_id = str(agent["id"])
        return self.agent_id

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop heartbeating. A heartbeat in flight (wandb retrying a 5xx) is not waited for
        past ``timeout_s``: the thread is a daemon and the process may exit."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- the runs this agent reports -----------------------------------------------------
    def hold(self, run_id: str) -> None:
        with self._lock:
            if run_id not in self._runs:
                self._runs.append(run_id)

    def release(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._runs:
                self._runs.remove(run_id)

    def run_states(self) -> dict[str, bool]:
        """What the heartbeat reports: every run held is running (queued ones too, so the
        server neither hands them out again nor marks them crashed)."""
        with self._lock:
            return dict.fromkeys(self._runs, True)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._runs)

    # -- the thread ----------------------------------------------------------------------
    def _beat(self) -> None:
        from wandb.apis.public.sweeps import _agent_heartbeat
        from wandb.sdk.sweeps import SweepNotFoundError

        next_beat = time.monotonic()
        while not self._stop.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = max(next_beat + self.interval_s, time.monotonic())
            states = self.run_states()
            if not states and not self.wanted():
                continue  # nothing to report and no work wanted (--count reached, exit)
            try:
                commands = _agent_heartbeat(self.api, self.agent_id, {}, states)
            except SweepNotFoundError:
                self.gone = True
                return
            except Exception:  # never the end of the agent: the next round tries again
                self.errors += 1
                continue
            for command in commands or []:
                if not isinstance(command, dict):
                    continue
                if command.get("type") in ("run", "resume") and command.get("run_id"):
                    self.hold(str(command["run_id"]))  # reported from the next beat on
                self.commands.put(command)
