"""FAKE W&B public API for cloud mode: answers the GraphQL calls of wandb's own agent code.

Only the transport is fake. wandb's real functions (``_sweep_with_runs``, ``_register_agent``,
``_agent_heartbeat``) build the queries and parse the answers; this object plays the server:
it serves the sweep's config, registers the agent, and on each heartbeat replays the next
commands of a script (run, stop, exit) once their condition on the reported run states holds.
``run(path).summary.update(...)`` records what gpusweep pushes to a run's summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml

RunStates = dict[str, bool]
Step = tuple[Callable[[RunStates], bool], list[dict[str, Any]]]


def run_command(run_id: str, program: str, **params: Any) -> dict[str, Any]:
    """A ``run`` command as the W&B server sends it."""
    return {"type": "run", "run_id": run_id, "program": program,
            "args": {k: {"value": v} for k, v in params.items()}}


def stop_command(run_id: str) -> dict[str, Any]:
    return {"type": "stop", "run_id": run_id}


def exit_command() -> dict[str, Any]:
    return {"type": "exit"}


class FakeSummary(dict):
    def __init__(self, api: FakeWandbApi, path: str) -> None:
        super().__init__()
        self._api, self._path = api, path

    def update(self, values: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._api.summaries.setdefault(self._path, {}).update(values or {})


class FakeRun:
    def __init__(self, api: FakeWandbApi, path: str) -> None:
        self.summary = FakeSummary(api, path)


class FakeWandbApi:
    """FAKE: stands in for ``wandb.Api()`` (and its ``_service_api``) in cloud-mode tests."""

    def __init__(self, sweep_config: dict[str, Any], script: list[Step],
                 entity: str = "team", project: str = "proj") -> None:
        self.settings = {"entity": entity, "project": project}
        self._service_api = self
        self.sweep_config = sweep_config
        self.script = list(script)
        self.registered: list[dict[str, Any]] = []
        self.heartbeats: list[RunStates] = []
        self.summaries: dict[str, dict[str, Any]] = {}

    def run(self, path: str) -> FakeRun:
        return FakeRun(self, path)

    def execute_graphql(self, query: str, variables: dict[str, Any] | None = None,
                        timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        variables = variables or {}
        if "SweepWithRuns" in query:
            return {"project": {"sweep": {
                "id": "fake", "name": variables["sweep"], "config": yaml.safe_dump(
                    self.sweep_config), "runs": {"edges": []}}}}
        if "CreateAgent" in query:
            self.registered.append(dict(variables))
            return {"createAgent": {"agent": {"id": "fake-agent-1"}}}
        if "Heartbeat" in query:
            states = json.loads(variables["runState"])
            self.heartbeats.append(states)
            return {"agentHeartbeat": {"commands": json.dumps(self._next(states))}}
        raise AssertionError(f"unexpected query: {query[:80]}")

    def _next(self, states: RunStates) -> list[dict[str, Any]]:
        if self.script and self.script[0][0](states):
            return self.script.pop(0)[1]
        return []
