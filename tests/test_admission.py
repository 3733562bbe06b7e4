"""The memory model at launch: run, shrink, skip, or wait beside a neighbour."""

import pytest
import yaml
from conftest import ROOT
from fakes import FakeDevice

from gpusweep.admission import Action, decide, free_for
from gpusweep.config import parse_sweep
from gpusweep.display import QuietDisplay
from gpusweep.isolation import FitConfig
from gpusweep.memfit import MemoryModel
from gpusweep.runner import SweepOptions, SweepRunner

# peak_mb = 1.0 * batch_size^1 (exp(0) = 1), fitted on 5 trials
MODEL = MemoryModel(features=("batch_size",), exponents=(1.0,), intercept=0.0, n=5,
                    source="gpu")


def call(params, free, policy="skip", model=MODEL, neighbours=False, pack=False, **fit):
    config = FitConfig(features=["batch_size"], policy=policy, margin=0.1, **fit)
    return decide(params, model, free, config, "batch_size", neighbours, pack)


def test_a_trial_that_fits_runs_unchanged():
    result = call({"batch_size": 100}, free=200)
    assert result.action is Action.RUN and result.params == {"batch_size": 100}
    assert result.predicted_mb == pytest.approx(100.0) and result.reason is None


def test_skip_when_it_does_not_fit():
    result = call({"batch_size": 1000}, free=200)
    assert result.action is Action.SKIP and "1000 MB" in result.reason


def test_shrink_halves_the_batch_until_it_fits():
    result = call({"batch_size": 1000, "lr": 0.1}, free=200, policy="shrink")
    assert result.action is Action.RUN and result.params == {"batch_size": 125, "lr": 0.1}
    assert "shrunk to 125" in result.reason


def test_shrink_gives_up_below_its_minimum():
    result = call({"batch_size": 1000}, free=50, policy="shrink", min=64)
    assert result.action is Action.SKIP and "at 64" in result.reason


def test_off_predicts_but_always_runs():
    result = call({"batch_size": 1000}, free=200, policy="off")
    assert result.action is Action.RUN and result.predicted_mb == pytest.approx(1000.0)


def test_an_untrusted_model_decides_nothing():
    young = MemoryModel(("batch_size",), (1.0,), 0.0, n=2, source="gpu")
    assert call({"batch_size": 1000}, free=200, model=young).action is Action.RUN
    assert call({"batch_size": 1000}, free=200, model=None).action is Action.RUN


def test_pack_waits_for_a_neighbour_instead_of_skipping():
    assert call({"batch_size": 150}, free=100, neighbours=True, pack=True).action is Action.WAIT
    assert call({"batch_size": 150}, free=100, neighbours=False, pack=True).action is Action.SKIP


def test_free_memory_leaves_room_for_neighbours_growth():
    assert free_for(1000.0, [300.0, -50.0]) == 700.0  # a shrinking neighbour frees nothing
    assert free_for(None, [300.0]) is None


def ballast_sweep(policy):
    # tests/programs/ballast.py holds batch_size * hidden / 128 MB: here batch_size MB.
    return {
        "program": "tests/programs/ballast.py", "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"batch_size": {"values": [8, 16, 32, 64, 4096]},
                       "hidden": {"value": 128}, "epochs": {"value": 1},
                       "sleep": {"value": 0.1}},
        "isolation": {"fit": {"features": ["batch_size"], "policy": policy,
                              "budget_mb": 300, "min_trials": 3}},
    }


@pytest.mark.slow
def test_skip_policy_never_starts_a_trial_that_would_not_fit(write_sweep, run_sweep):
    result = run_sweep(write_sweep(ballast_sweep("skip")))
    assert result.returncode == 0, result.proc.stderr
    rows = {r["params"]["batch_size"]: r for r in result.sweep["trials"]}
    assert rows[4096]["status"] == "skipped_no_fit" and rows[64]["status"] == "finished"
    skipped = result.memory(rows[4096]["run"])
    assert skipped["predicted_peak_mb"] > 300 and "300 MB free" in skipped["fit_note"]
    assert not (result.sweep_dir / rows[4096]["run"] / "output.log").exists()
    ran = result.memory(rows[64]["run"])  # predicted from the first three trials
    assert ran["predicted_peak_mb"] is not None and ran["prediction_error"] is not None


@pytest.mark.slow
def test_shrink_policy_runs_it_with_a_smaller_batch(write_sweep, run_sweep):
    result = run_sweep(write_sweep(ballast_sweep("shrink")))
    assert result.returncode == 0, result.proc.stderr
    last = result.memories()[-1]
    assert last["status"] == "finished" and "shrunk" in last["fit_note"]
    assert 64 <= last["params"]["batch_size"] < 4096
    assert last["host"]["peak_rss_mb"] < 300


@pytest.mark.slow
def test_a_skipped_trial_is_recorded_on_its_slots_device(tmp_path, monkeypatch):
    """FAKE GPU (no NVML here): the skipped trial names the slot's device, not ``cpu``, and
    its prediction is rounded like every other record's."""
    monkeypatch.chdir(ROOT)
    config = ballast_sweep("skip")
    config["parameters"]["batch_size"] = {"values": [8, 16, 32, 4096]}
    gpu = FakeDevice([1000.0], name="FakeGPU-skip", uuid="GPU-fake-7", index=3)
    runner = SweepRunner(parse_sweep(config, "skip.yaml"), SweepOptions(log_dir=str(tmp_path)),
                         [gpu], QuietDisplay())
    assert runner.run() == 0
    skipped = runner.session.records[-1]
    assert skipped.status.value == "skipped_no_fit"
    assert (skipped.gpu.device, skipped.gpu.index) == ("FakeGPU-skip", 3)
    assert skipped.predicted_peak_mb == round(skipped.predicted_peak_mb, 1)
    sweep_yaml = tmp_path / runner.session.sweep_id / "sweep.yaml"
    row = yaml.safe_load(sweep_yaml.read_text())["trials"][-1]
    assert row["device"] == "3: FakeGPU-skip"


@pytest.mark.slow
def test_a_skipped_trial_in_the_middle_of_a_grid_does_not_end_the_sweep(write_sweep,
                                                                         run_sweep):
    config = {
        "program": "tests/programs/ballast.py", "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"batch_size": {"values": [8, 16, 32, 4096, 64, 24]},
                       "hidden": {"value": 128}, "epochs": {"value": 1},
                       "sleep": {"value": 0.05}},
        "isolation": {"fit": {"features": ["batch_size"], "policy": "skip",
                              "budget_mb": 300}},
    }
    result = run_sweep(write_sweep(config))
    statuses = {r["params"]["batch_size"]: r["status"] for r in result.sweep["trials"]}
    assert statuses == {8: "finished", 16: "finished", 32: "finished",
                        4096: "skipped_no_fit", 64: "finished", 24: "finished"}
