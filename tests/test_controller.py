"""W&B's engine through our controller: grid, random, bayes, Hyperband, plain values."""

import pytest

from gpusweep.config import parse_sweep
from gpusweep.controller import Controller, RunView, engine_run

PROGRAM = "tests/programs/quadratic.py"


def spec(**config):
    base = {"program": PROGRAM, "method": "grid", "metric": {"name": "loss"},
            "parameters": {"x": {"values": [1, 2, 3]}}}
    base.update(config)
    return parse_sweep(base, "sweep.yaml")


def test_grid_proposes_every_point_once_then_none():
    parameters = {"x": {"values": [1, 2]}, "y": {"values": ["a", "b"]}}
    controller = Controller(spec(parameters=parameters), seed="s")
    runs = []
    while (params := controller.propose(runs)) is not None:
        runs.append(RunView(f"r{len(runs)}", params, "finished"))
        assert len(runs) <= 4
    assert sorted((r.params["x"], r.params["y"]) for r in runs) == [
        (1, "a"), (1, "b"), (2, "a"), (2, "b")]


def test_failed_and_killed_points_are_not_proposed_again():
    controller = Controller(spec(), seed="s")
    runs = [RunView("a", {"x": 1}, "failed"), RunView("b", {"x": 2}, "killed")]
    assert controller.propose(runs) == {"x": 3}


def test_int_uniform_grid_expands_inclusive():
    controller = Controller(spec(parameters={"n": {"min": 1, "max": 3}}), seed="s")
    runs = []
    while (params := controller.propose(runs)) is not None:
        runs.append(RunView(str(len(runs)), params, "finished"))
    assert sorted(r.params["n"] for r in runs) == [1, 2, 3]


def test_nested_grid_parameters_terminate():
    config = spec(parameters={"model": {"parameters": {"hidden": {"values": [8, 16]}}}})
    controller = Controller(config, seed="s")
    runs = []
    while (params := controller.propose(runs)) is not None:
        runs.append(RunView(str(len(runs)), params, "finished"))
        assert len(runs) <= 2, "nested grid proposed forever"
    assert [r.params for r in runs] == [{"model": {"hidden": 8}}, {"model": {"hidden": 16}}]


def test_random_values_are_plain_python_and_reproducible_per_seed():
    config = spec(method="random", parameters={"lr": {"min": 0.001, "max": 0.1},
                                               "n": {"min": 1, "max": 9}})
    first = Controller(config, seed="abc").propose([])
    again = Controller(config, seed="abc").propose([])
    other = Controller(config, seed="xyz").propose([])
    assert first == again and first != other
    assert type(first["lr"]) is float and type(first["n"]) is int


def test_bayes_proposes_within_bounds():
    config = spec(method="bayes", parameters={"lr": {"min": 0.001, "max": 0.1}})
    controller = Controller(config, seed="s")
    runs = [RunView(str(i), {"lr": lr}, "finished", [{"loss": lr * 10}])
            for i, lr in enumerate([0.002, 0.05, 0.09])]
    params = controller.propose(runs)
    assert 0.001 <= params["lr"] <= 0.1 and type(params["lr"]) is float


def test_engine_run_keeps_the_history():
    run = engine_run(RunView("a", {"x": 1}, "running", [{"loss": 3.0}, {"loss": 2.0}]))
    assert run.metric_history("loss") == [3.0, 2.0]
    assert run.summary_metrics == {"loss": 2.0}


def test_hyperband_stops_the_worse_running_trial_from_its_history():
    controller = Controller(spec(early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3}),
                            seed="s")
    runs = [
        RunView("good", {"x": 3}, "finished", [{"loss": 1.0}, {"loss": 0.5}, {"loss": 0.3}]),
        RunView("bad", {"x": 1}, "running", [{"loss": 9.0}, {"loss": 8.0}]),
        RunView("fine", {"x": 2}, "running", [{"loss": 0.9}]),
    ]
    assert controller.to_stop(runs) == ["bad"]


def test_no_history_means_no_stop():
    controller = Controller(spec(early_terminate={"type": "hyperband", "min_iter": 1}), seed="s")
    runs = [RunView("a", {"x": 1}, "finished", []), RunView("b", {"x": 2}, "running", [])]
    assert controller.to_stop(runs) == []


@pytest.mark.parametrize("bad", [{"x": {"values": []}}, {}])
def test_parameters_must_not_be_empty(bad):
    from gpusweep.errors import BadInput

    with pytest.raises(BadInput):
        spec(parameters=bad)


def test_engine_states_are_the_engines_own_and_a_typo_is_refused():
    import sweeps
    from gpusweep.status import ENGINE_STATE, EngineState, TrialStatus

    assert {s.value for s in EngineState} == {s.value for s in sweeps.RunState}
    assert set(ENGINE_STATE) == set(TrialStatus)  # every outcome tells the engine something
    assert RunView("a", {}, "finished").state is EngineState.FINISHED
    assert engine_run(RunView("a", {}, EngineState.KILLED)).state == sweeps.RunState.killed
    with pytest.raises(ValueError):
        RunView("a", {}, "finshed")
