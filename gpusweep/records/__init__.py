"""What a sweep leaves on disk, in one package: the records (:mod:`.model`), where each file
lives (:mod:`.layout`), the one writer (:mod:`.writer`, with :mod:`.journal` and
:mod:`.atomic`) and the one reader (:mod:`.reader`).

The records themselves are importable from here: ``from gpusweep.records import TrialRecord``.
"""

from gpusweep.records.model import (
    CleanupRecord,
    GpuRecord,
    HostRecord,
    LeakRecord,
    MetricSummary,
    SummaryState,
    SweepHeader,
    SweepState,
    Timeline,
    TrialOrigin,
    TrialRecord,
    best_trial,
)

__all__ = ["CleanupRecord", "GpuRecord", "HostRecord", "LeakRecord", "MetricSummary",
           "SummaryState", "SweepHeader", "SweepState", "Timeline", "TrialOrigin", "TrialRecord",
           "best_trial"]
