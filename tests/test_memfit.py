"""The memory model on synthetic trials: it recovers a known power law and decides fits."""

import math
import random

import pytest

from gpusweep import memfit, params
from gpusweep.memfit import Observation
from gpusweep.records import GpuRecord, HostRecord, TrialRecord
from gpusweep.status import TrialStatus

FEATURES = ["train.batch_size", "model.hidden", "model.layers"]


def law(params):
    """The ground truth: peak = 0.02 * batch * hidden^0.5 * layers^1.5 MB."""
    p = params
    return 0.02 * p["train"]["batch_size"] ** 1.0 * p["model"]["hidden"] ** 0.5 \
        * p["model"]["layers"] ** 1.5


def sample_params(rng):
    return {"train": {"batch_size": rng.choice([16, 32, 64, 128, 256])},
            "model": {"hidden": rng.choice([64, 128, 256, 512]),
                      "layers": rng.choice([1, 2, 4, 8])}}


def record(run, params, status=TrialStatus.FINISHED, gpu=None, host=None):
    return TrialRecord(run=run, params=params, status=status, exit_code=0, signal=None,
                       started="", ended="", duration_s=1.0,
                       gpu=GpuRecord(peak_tree_mb=gpu), host=HostRecord(peak_rss_mb=host))


def test_fit_recovers_a_known_power_law():
    rng = random.Random(0)
    observed = []
    for i in range(20):
        params = sample_params(rng)
        noise = math.exp(rng.gauss(0, 0.02))
        observed.append(Observation(f"r{i}", params, law(params) * noise))
    model = memfit.fit(observed, FEATURES)
    assert model.features == tuple(FEATURES) and model.n == 20
    assert model.exponents == pytest.approx((1.0, 0.5, 1.5), abs=0.05)
    assert math.exp(model.intercept) == pytest.approx(0.02, rel=0.3)
    new = {"train": {"batch_size": 48}, "model": {"hidden": 100, "layers": 3}}
    assert memfit.relative_error(model.predict(new), law(new)) == pytest.approx(0, abs=0.05)
    text = model.describe()
    assert "train.batch_size^0.9" in text or "train.batch_size^1.0" in text
    assert "model.layers^1.5" in text or "model.layers^1.4" in text
    assert "fit on 20 trials" in text


def test_flat_dotted_keys_work_like_nested_ones():
    observed = [Observation(str(b), {"train.batch_size": b}, 10.0 * b) for b in (8, 16, 64)]
    model = memfit.fit(observed, ["train.batch_size"])
    assert model.exponents == pytest.approx((1.0,), abs=0.01)
    assert model.predict({"train.batch_size": 32}) == pytest.approx(320, rel=0.02)
    assert model.predict({"train": {"batch_size": 32}}) == pytest.approx(320, rel=0.02)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_fewer_trials_than_features_does_not_crash(n):
    rng = random.Random(n)
    observed = []
    for i in range(n):
        params = sample_params(rng)
        observed.append(Observation(f"r{i}", params, law(params)))
    model = memfit.fit(observed, FEATURES)
    if n == 0:
        assert model is None
        return
    prediction = model.predict(sample_params(rng))
    assert prediction is not None and math.isfinite(prediction) and prediction > 0
    for obs in observed:  # the few points it saw are explained (ridge is small)
        assert memfit.relative_error(model.predict(obs.params), obs.peak_mb) == \
            pytest.approx(0, abs=0.1)
    if n == 1:
        assert model.features == () and model.predict(observed[0].params) == \
            pytest.approx(observed[0].peak_mb)


def test_a_feature_that_never_varies_goes_into_the_constant():
    observed = [Observation(str(b), {"batch": b, "layers": 4}, 2.0 * b) for b in (8, 16, 32)]
    model = memfit.fit(observed, ["batch", "layers"])
    assert model.features == ("batch",) and model.fixed == (("layers", pytest.approx(4.0)),)
    assert "not varied" in model.describe() and "layers=4" in model.describe()


def test_missing_or_non_numeric_features_are_skipped_not_fatal():
    observed = [Observation("a", {"batch": 8}, 80.0), Observation("b", {"batch": 16}, 160.0),
                Observation("c", {"batch": "big"}, 1e6), Observation("d", {}, 1e6),
                Observation("e", {"batch": True}, 1e6), Observation("f", {"batch": 0}, 1e6)]
    model = memfit.fit(observed, ["batch"])
    assert model.n == 2
    assert model.predict({"batch": 32}) == pytest.approx(320, rel=0.05)
    assert model.predict({}) is None and model.predict({"batch": -1}) is None


def test_records_use_gpu_peaks_when_there_are_any_and_skip_failed_trials():
    records = [
        record("a", {"batch": 8}, gpu=800.0, host=300.0),
        record("b", {"batch": 16}, gpu=1600.0, host=300.0),
        record("c", {"batch": 64}, TrialStatus.FAILED, gpu=2000.0, host=300.0),  # OOM: no
        record("d", {"batch": 32}, TrialStatus.STOPPED_EARLY, gpu=3200.0, host=300.0),
        record("e", {"batch": 4}, TrialStatus.FAILED),  # crashed before any sample
    ]
    observed, source = memfit.observations(records)
    assert source == "gpu" and [o.run for o in observed] == ["a", "b", "d"]
    model = memfit.fit_records(records, ["batch"])
    assert model.source == "gpu" and model.exponents == pytest.approx((1.0,), abs=0.01)
    assert "peak gpu MB" in model.describe()


def test_host_rss_is_fitted_without_a_gpu():
    records = [record(str(b), {"batch": b}, host=100.0 + b) for b in (8, 64, 512)]
    model = memfit.fit_records(records, ["batch"])
    assert model.source == "host" and 0 < model.exponents[0] < 1


def test_gpu_peak_falls_back_to_torch_reserved_then_rise_over_baseline():
    base = dict(run="r", params={}, status=TrialStatus.FINISHED, exit_code=0, signal=None,
                started="", ended="", duration_s=1.0)
    reserved = TrialRecord(**base, gpu=GpuRecord(torch_peak_reserved_mb=500.0))
    rise = TrialRecord(**base, gpu=GpuRecord(peak_used_mb=1500.0, baseline_mb=500.0))
    assert memfit.peak_of(reserved, "gpu") == 500.0
    assert memfit.peak_of(rise, "gpu") == 1000.0
    assert memfit.peak_of(TrialRecord(**base), "gpu") is None


def test_before_launch_predicts_each_trial_from_the_earlier_ones():
    observed = [Observation(str(b), {"batch": b}, 10.0 * b) for b in (8, 16, 32, 64)]
    predictions = memfit.before_launch(observed, ["batch"], min_trials=2)
    assert predictions[:2] == [None, None]
    assert predictions[2] == pytest.approx(320, rel=0.02)
    assert predictions[3] == pytest.approx(640, rel=0.02)


def test_relative_error():
    assert memfit.relative_error(110.0, 100.0) == pytest.approx(0.1)
    assert memfit.relative_error(None, 100.0) is None
    assert memfit.relative_error(100.0, 0.0) is None


def test_fits_keeps_a_margin_and_passes_when_it_cannot_know():
    assert memfit.fits(1000.0, 0.2, 1200.0)
    assert not memfit.fits(1000.0, 0.2, 1199.0)
    assert memfit.fits(None, 0.2, 10.0)  # no model yet
    assert memfit.fits(1e9, 0.2, None)  # no device


def linear(params_):
    return 10.0 * params.number(params_, "train.batch_size")


def test_shrink_to_fit_halves_the_batch_until_it_fits():
    params = {"train": {"batch_size": 256}, "lr": 0.1}
    shrunk = memfit.shrink_to_fit(params, "train.batch_size", linear, free_mb=700.0,
                                  margin=0.0, min_value=8)
    assert shrunk == {"train": {"batch_size": 64}, "lr": 0.1}
    assert isinstance(shrunk["train"]["batch_size"], int)
    assert params["train"]["batch_size"] == 256  # the input is not modified


def test_shrink_to_fit_returns_params_unchanged_when_they_fit():
    params = {"train.batch_size": 32}
    assert memfit.shrink_to_fit(params, "train.batch_size", linear, 1000.0, 0.1, 8) == params


def test_shrink_to_fit_tries_the_minimum_last_and_gives_up_below_it():
    params = {"train.batch_size": 100}
    tried = []

    def spy(p):
        tried.append(p["train.batch_size"])
        return linear(p)

    assert memfit.shrink_to_fit(params, "train.batch_size", spy, 165.0, 0.0, 16) == \
        {"train.batch_size": 16}
    assert tried == [100, 50, 25, 16]
    assert memfit.shrink_to_fit(params, "train.batch_size", linear, 150.0, 0.0, 16) is None


def test_shrink_to_fit_without_a_prediction_lets_the_trial_run():
    params = {"train.batch_size": 64}
    assert memfit.shrink_to_fit(params, "train.batch_size", lambda p: None, 1.0, 0.1, 8) == \
        params


def test_host_peak_without_wandb_service_is_what_the_model_fits():
    # wandb's service swings the whole tree's peak; the trial's own figure is fitted when known.
    noisy = TrialRecord(run="a", params={}, status=TrialStatus.FINISHED, exit_code=0,
                        signal=None, started="", ended="", duration_s=1.0,
                        host=HostRecord(peak_rss_mb=721.0, peak_rss_trial_mb=371.0))
    assert memfit.peak_of(noisy, "host") == 371.0
    assert memfit.peak_of(record("b", {}, host=409.0), "host") == 409.0  # older records
