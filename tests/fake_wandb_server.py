"""FAKE W&B server: a local HTTP server that answers wandb-core's GraphQL at WANDB_BASE_URL.

Nothing in wandb is patched: the real ``wandb.Api()``, the real wandb-core service and wandb's
own sweep functions (``wandb.sweep``, ``_sweep_with_runs``, ``_register_agent``,
``_agent_heartbeat``, a run's ``summary.update``) talk HTTP to this server. It models what
the real server does to an agent (as far as wandb's client code shows it):

- the sweep config travels as a YAML string, heartbeat commands as a JSON string;
- a ``run`` command goes to an agent whose heartbeat reports no running run, with params
  from W&B's own engine (``sweeps.next_run``) over the sweep's runs;
- ``stop`` is re-sent on every heartbeat until the run is gone from the agent's run states;
- ``resume`` commands, ``exit`` once the sweep has nothing left to propose (or was stopped);
- a deleted sweep answers heartbeats with HTTP 404 (wandb raises ``SweepNotFoundError``);
- queued HTTP errors (5xx) and delays (past the client's timeout) for any operation, and a
  refused agent registration;
- ``upsertSweep`` creates a sweep (with ``priorRunsFilters``) or changes its state.

Trial runs do not stream to it: they run offline in these tests (their ``.wandb`` files are
read back instead); see README, "What was verified, and how".
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fake_http import Faults, QuietServer, handler_for, operation_name

API_KEY = "f" * 40  # a well-formed key; the fake accepts any
_ALPHABET = string.ascii_lowercase + string.digits


def _new_id(length: int = 8) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class FakeRun:
    name: str
    config: dict[str, Any]
    state: str = "running"  # running | finished (gone from its agent) | preempting ...
    agent: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeSweep:
    name: str
    entity: str
    project: str
    config: dict[str, Any]
    state: str = "RUNNING"
    runs: dict[str, FakeRun] = field(default_factory=dict)
    prior_runs_filters: Any = None
    deleted: bool = False
    propose: bool = True  # hand out runs from the engine (else only what a test sends)


@dataclass
class Heartbeat:
    t: float  # monotonic time the server got it
    agent: str
    run_states: dict[str, bool]


class FakeWandbServer(Faults):
    """FAKE of the W&B server for wandb-core; start it, point ``env()`` at it."""

    def __init__(self, entity: str = "team", project: str = "proj") -> None:
        super().__init__()
        self.entity = entity
        self.project = project
        self.sweeps: dict[str, FakeSweep] = {}
        self.agents: dict[str, str] = {}  # agent id -> sweep name
        self.heartbeats: list[Heartbeat] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []  # (agent, command), in order
        self.operations: list[str] = []  # every GraphQL operation name, in order
        self.refuse_agents: str | None = None  # a GraphQL error for createAgent
        self.uploaded: dict[str, FakeRun] = {}  # runs created outside any sweep (wandb sync)
        self.file_stream: dict[str, list[dict[str, Any]]] = {}  # run -> file_stream posts
        self.uploads: list[str] = []  # paths of the files PUT
        self._outbox: dict[str, list[dict[str, Any]]] = {}  # agent (or "*") -> commands
        self._stops: set[str] = set()  # runs to stop: re-sent until gone
        self._hooks: list[Callable[[Heartbeat], list[dict[str, Any]] | None]] = []
        self._lock = threading.RLock()  # hooks call stop() and send() while it is held
        self._httpd = QuietServer(("127.0.0.1", 0), handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- test-side controls ------------------------------------------------------------
    def start(self) -> FakeWandbServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def env(self, home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose wandb talks to this server only (own HOME and config)."""
        import os

        env = dict(os.environ if base is None else base)
        for name in [k for k in env if k.startswith("WANDB_")]:
            env.pop(name)
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), WANDB_CONFIG_DIR=str(home / ".config" / "wandb"),
                   WANDB_CACHE_DIR=str(home / ".cache"), WANDB_BASE_URL=self.url,
                   WANDB_API_KEY=API_KEY, NO_PROXY="127.0.0.1,localhost",
                   no_proxy="127.0.0.1,localhost", WANDB_SILENT="true",
                   WANDB_ERROR_REPORTING="false")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        return env

    def add_sweep(self, config: dict[str, Any], name: str | None = None,
                  propose: bool = True) -> FakeSweep:
        sweep = FakeSweep(name or _new_id(), self.entity, self.project, dict(config),
                          propose=propose)
        self.sweeps[sweep.name] = sweep
        return sweep

    def send(self, command: dict[str, Any], agent: str = "*") -> None:
        """Queue a command for an agent's next heartbeat (any agent with ``*``)."""
        with self._lock:
            self._outbox.setdefault(agent, []).append(command)

    def stop(self, run: str) -> None:
        """Stop a run, as Hyperband or a person in the UI would: re-sent until it is gone."""
        with self._lock:
            self._stops.add(run)

    def on_heartbeat(self, hook: Callable[[Heartbeat], list[dict[str, Any]] | None]) -> None:
        """Call ``hook`` on every heartbeat; the commands it returns are sent too."""
        self._hooks.append(hook)

    def runs(self, sweep: str) -> dict[str, FakeRun]:
        return self.sweeps[sweep].runs

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 60) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    # -- the server ----------------------------------------------------------------------
    def upload(self, path: str) -> None:
        with self._lock:
            self.uploads.append(path)

    def graphql(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        variables = request.get("variables") or {}
        operation = operation_name(request)
        with self._lock:
            self.operations.append(operation)
            status = self.failure(operation)
            if status is not None:
                return status, {"errors": [{"message": f"fake server error {status}"}]}
            try:
                handler = getattr(self, f"_op_{operation}", None)
                if handler is None:
                    return 200, {"errors": [{"message": f"fake: no {operation}"}]}
                return handler(variables)
            except _GraphQLError as exc:
                return exc.status, {"errors": [{"message": str(exc)}]}

    # each operation wandb sends; answers are what wandb's client code reads
    def _op_Viewer(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return 200, {"data": {"viewer": {
            "id": "user-1", "entity": self.entity, "username": "fake-user",
            "email": "fake@example.invalid", "admin": False, "flags": "{}",
            "teams": {"edges": []}}}}

    def _op_GetDefaultEntity(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return 200, {"data": {"viewer": {"id": "user-1", "entity": self.entity}}}

    def _sweep_of(self, variables: dict[str, Any], key: str = "sweep") -> FakeSweep | None:
        sweep = self.sweeps.get(str(variables.get(key)))
        return None if sweep is None or sweep.deleted else sweep

    def _op_SweepWithRuns(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        sweep = self._sweep_of(variables)
        if sweep is None or variables.get("project") not in (None, sweep.project):
            return 200, {"data": {"project": {"sweep": None}}}
        runs = [{"node": {"name": r.name, "state": r.state, "config": json.dumps(r.config),
                          "exitcode": None, "heartbeatAt": None, "shouldStop": False,
                          "failed": False, "stopped": False, "running": r.state == "running",
                          "summaryMetrics": json.dumps(r.summary), "sampledHistory": []}}
                for r in sweep.runs.values()]
        return 200, {"data": {"project": {"sweep": {
            "id": f"sweep-{sweep.name}", "name": sweep.name, "method":
            sweep.config.get("method"), "state": sweep.state, "description": None,
            "config": yaml.safe_dump(sweep.config), "createdAt": "", "heartbeatAt": "",
            "updatedAt": "", "earlyStopJobRunning": False, "bestLoss": None,
            "controller": None, "scheduler": None, "runs": {"edges": runs}}}}}

    def _op_UpsertSweep(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        obj_id = variables.get("id")
        if obj_id:  # a state change (wandb sweep --stop, or an update)
            sweep = next((s for s in self.sweeps.values() if f"sweep-{s.name}" == obj_id), None)
            if sweep is None:
                raise _GraphQLError("sweep not found", 404)
            if variables.get("state"):
                sweep.state = variables["state"]
        else:
            config = yaml.safe_load(variables.get("config") or "") or {}
            sweep = FakeSweep(_new_id(), variables.get("entityName") or self.entity,
                              variables.get("projectName") or self.project, config)
            filters = variables.get("priorRunsFilters")
            sweep.prior_runs_filters = json.loads(filters) if filters else None
            if variables.get("state"):
                sweep.state = variables["state"]
            self.sweeps[sweep.name] = sweep
        return 200, {"data": {"upsertSweep": {"sweep": {
            "name": sweep.name, "project": {"id": "p1", "name": sweep.project,
                                            "entity": {"id": "e1", "name": sweep.entity}}},
            "configValidationWarnings": []}}}

    def _op_CreateAgent(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        if self.refuse_agents:
            raise _GraphQLError(self.refuse_agents, 200)
        sweep = self._sweep_of(variables)
        if sweep is None:
            raise _GraphQLError(f"sweep {variables.get('sweep')} not found", 200)
        agent = f"agent-{len(self.agents) + 1}"
        self.agents[agent] = sweep.name
        return 200, {"data": {"createAgent": {"agent": {"id": agent}}}}

    def _op_Heartbeat(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        agent = str(variables.get("id"))
        states = json.loads(variables.get("runState") or "{}")
        beat = Heartbeat(time.monotonic(), agent, states)
        self.heartbeats.append(beat)
        sweep = self.sweeps.get(self.agents.get(agent, ""))
        if sweep is None or sweep.deleted:
            raise _GraphQLError("agent or sweep not found", 404)
        for run in sweep.runs.values():  # a run its agent no longer reports has ended
            if run.agent == agent and run.state == "running" and run.name not in states:
                run.state = "finished"
        commands = [{"type": "stop", "run_id": run} for run in sorted(self._stops)
                    if states.get(run)]
        commands += self._outbox.pop(agent, []) + self._outbox.pop("*", [])
        for hook in self._hooks:
            commands += hook(beat) or []
        if not any(states.values()) and not any(c["type"] in ("run", "resume", "exit")
                                                for c in commands):
            commands += self._propose(sweep, agent)
        self.sent += [(agent, command) for command in commands]
        for command in commands:
            if command["type"] in ("run", "resume"):
                run = sweep.runs.get(command["run_id"])
                if run is None:
                    run = sweep.runs[command["run_id"]] = FakeRun(
                        command["run_id"], dict(command.get("args") or {}))
                run.state, run.agent = "running", agent
        return 200, {"data": {"agentHeartbeat": {"agent": {"id": agent},
                                                 "commands": json.dumps(commands)}}}

    def _propose(self, sweep: FakeSweep, agent: str) -> list[dict[str, Any]]:
        """The next run from W&B's own engine, or ``exit`` once there is none."""
        if sweep.state != "RUNNING":
            return [{"type": "exit"}]
        if not sweep.propose:
            return []
        import sweeps as engine

        config = {k: v for k, v in sweep.config.items()
                  if k not in ("isolation", "run_cap", "project", "entity")}
        runs = [engine.SweepRun(name=r.name, state=_engine_state(r.state), config=r.config)
                for r in sweep.runs.values()]
        cap = sweep.config.get("run_cap")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proposal = None if cap is not None and len(runs) >= cap else \
                engine.next_run(config, runs)
        if proposal is None:
            sweep.state = "FINISHED"
            return [{"type": "exit"}]
        args = {k: {"value": _plain(v["value"])} for k, v in proposal.config.items()}
        return [{"type": "run", "run_id": _new_id(), "program": sweep.config.get("program"),
                 "args": args}]

    def _op_Run(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        run = self._find_run(str(variables.get("name")))
        if run is None:
            return 200, {"data": {"project": {"run": None}}}
        return 200, {"data": {"project": {"run": {
            "projectId": "1", "id": f"run-{run.name}", "tags": [], "name": run.name,
            "displayName": run.name, "sweepName": None, "state": run.state,
            "config": json.dumps(run.config), "group": None, "jobType": None,
            "commit": None, "readOnly": False, "createdAt": "2026-01-01T00:00:00",
            "heartbeatAt": None, "description": None, "notes": None, "systemMetrics": "{}",
            "summaryMetrics": json.dumps(run.summary), "historyLineCount": 0,
            "user": {"name": "fake-user", "username": "fake-user"}, "historyKeys": None}}}}

    def _op_UpsertBucket(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        """A run's summary update (by storage id), or a run created or updated by name (what
        ``wandb sync`` and an online ``wandb.init`` send)."""
        storage_id = str(variables.get("id") or "")
        name = variables.get("name") or storage_id.removeprefix("run-")
        run = self._find_run(str(name))
        if run is None and variables.get("name"):
            run = FakeRun(str(name), {}, state="running")
            self.uploaded[run.name] = run
            run.project = variables.get("project") or self.project
            run.sweep_name = variables.get("sweep")
        if run is None:
            raise _GraphQLError(f"run {storage_id} not found", 404)
        if variables.get("summaryMetrics"):
            run.summary = json.loads(variables["summaryMetrics"])
        if variables.get("config"):
            run.config = json.loads(variables["config"])
        project = getattr(run, "project", None) or self.project
        return 200, {"data": {"upsertBucket": {"inserted": True, "bucket": {
            "id": f"run-{run.name}", "name": run.name, "displayName": run.name,
            "description": None, "config": json.dumps(run.config), "sweepName": None,
            "historyLineCount": 0, "eventsLineCount": 0, "historyTail": "[]",
            "eventsTail": "[]", "summaryMetrics": json.dumps(run.summary),
            "project": {"id": "p1", "name": project, "entity": {"id": "e1",
                                                                 "name": self.entity}}}}}}

    def _op_RunResumeStatus(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        """Whether a run exists yet (asked before a ``resume="allow"`` run is written)."""
        run = self._find_run(str(variables.get("name")))
        bucket = None if run is None else {
            "id": f"run-{run.name}", "name": run.name, "displayName": run.name,
            "summaryMetrics": json.dumps(run.summary), "logLineCount": 0,
            "historyLineCount": 0, "eventsLineCount": 0, "historyTail": "[]",
            "eventsTail": "[]", "config": json.dumps(run.config), "tags": [],
            "wandbConfig": "{}"}
        return 200, {"data": {"model": {"id": "p1", "name": variables.get("project"),
                                        "entity": {"id": "e1", "name": self.entity},
                                        "bucket": bucket}}}

    def _op_CreateRunFiles(self, variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        """Upload URLs for a run's files: PUTs to this server, which keeps only the names."""
        run = str(variables.get("run"))
        files = [{"name": name, "uploadUrl": f"{self.url}/upload/{run}/{name}"}
                 for name in variables.get("files") or []]
        return 200, {"data": {"createRunFiles": {"runID": f"run-{run}", "uploadHeaders": [],
                                                 "files": files}}}

    def stream(self, path: str, body: bytes) -> dict[str, Any]:
        """``/files/<entity>/<project>/<run>/file_stream``: history, summary, exit code."""
        run = path.rstrip("/").split("/")[-2]
        try:
            post = json.loads(body or b"{}")
        except ValueError:
            post = {}
        with self._lock:
            self.file_stream.setdefault(run, []).append(post)
        return {"exitcode": None, "limits": {}}

    def _find_run(self, name: str) -> FakeRun | None:
        for sweep in self.sweeps.values():
            if name in sweep.runs:
                return sweep.runs[name]
        return self.uploaded.get(name)


class _GraphQLError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _engine_state(state: str) -> str:
    return state if state in ("running", "finished", "failed", "crashed", "killed",
                              "preempting", "preempted") else "finished"


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
