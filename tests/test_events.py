"""The trial's events as the parent reads them: whatever a trial writes, never a crash."""

from gpusweep.events import TrialEvents


def test_malformed_events_from_a_trial_never_raise():
    events = TrialEvents("loss")
    assert not events.add({"kind": "report", "metrics": "oops", "memory": [1]})
    assert not events.add({"kind": "report", "metrics": {"loss": "x"},
                           "memory": {"rss_mb": "big", "torch_peak_allocated_mb": True}})
    assert events.add({"kind": "report", "metrics": {"loss": 0.5}, "memory": {"rss_mb": 3}})
    assert events.report_memory == [{}, {}, {"rss_mb": 3}]
    assert events.torch_peak_allocated_mb is None and events.metric_values == [0.5]
