"""One sweep's shared state while this orchestrator runs it: what its parts all read.

The loop (:mod:`gpusweep.runner`), a trial's start (:mod:`gpusweep.trialstart`) and end
(:mod:`gpusweep.trialend`), the resume step, the display and the trial source each see the
sweep through this object. It holds only what lives as long as this process (the slots,
the counters, the clock); everything else is in the journal and the records, so a restart
rebuilds it from the sweep directory.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass

from gpusweep.config import SweepSpec
from gpusweep.controller import RunView
from gpusweep.gpu.baseline import DeviceBaselines
from gpusweep.gpu.device import Device
from gpusweep.recorder import SweepRecorder
from gpusweep.records import TrialRecord
from gpusweep.slotfill import SlotFiller, slot_count
from gpusweep.slots import Slot
from gpusweep.source import TrialSource
from gpusweep.trialrun import RunningTrial
from gpusweep.wb.env import resolve_project

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(length: int = 8) -> str:
    """A W&B-style id: lowercase letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class SweepOptions:
    log_dir: str = "log"
    count: int | None = None
    resume: str | None = None
    project: str | None = None
    profile_leaks: bool = False
    slots: int | str | None = None  # N or "auto"; default: isolation.slots, or one per device
    entity: str | None = None
    config_file: str | None = None  # replaces --config_file's value in every trial's argv


class SweepSession:
    """A validated sweep, where its trials come from, its slots and its records."""

    def __init__(self, spec: SweepSpec, options: SweepOptions, devices: list[Device],
                 source: TrialSource | None = None) -> None:
        from gpusweep.local_source import LocalSource

        self.spec = spec
        self.options = options
        self.devices = devices
        self.source: TrialSource = source or LocalSource(
            spec, options.resume or new_id(), resume=bool(options.resume))
        # one project for the trials and the summary run
        self.project = options.project or resolve_project(None, spec.project, spec.program)
        self.recorder = SweepRecorder(options.log_dir, self.sweep_id, spec,
                                      config_file=options.config_file, project=self.project,
                                      entity=options.entity)
        self.filler = SlotFiller(slot_count(options.slots, spec.isolation), spec.isolation,
                                 devices)
        self.baselines = DeviceBaselines(devices)  # per device, re-taken where PIDs lie
        self.launched = 0
        self.rerun_records = 0  # killed by our death (or preempted) and re-run: one run_cap
        self._started = time.monotonic()

    @property
    def sweep_id(self) -> str:
        return self.source.sweep_id

    @property
    def slots(self) -> list[Slot]:
        return self.filler.slots

    @property
    def sweep_dir(self) -> str:
        return self.recorder.dir

    @property
    def records(self) -> list[TrialRecord]:
        return self.recorder.records

    @property
    def running(self) -> list[RunningTrial]:
        """Trials in a slot, running or being finished, in slot order."""
        return [slot.trial for slot in self.slots if slot.trial is not None]

    def start_clock(self) -> None:
        """The sweep's wall time counts from here (after the lock and the signal traps)."""
        self._started = time.monotonic()

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._started

    def views(self) -> list[RunView]:
        return self.recorder.views() + [trial.view() for trial in self.running]

    def neighbour_pids(self, slot: Slot) -> set[int]:
        """The processes of the other trials on this slot's device, running or being cleaned
        up (read at every poll: a neighbour may start while this trial is being cleaned up)."""
        pids: set[int] = set()
        for other in list(self.slots):
            neighbour = other.trial
            if other is not slot and other.device is slot.device and neighbour:
                pids |= neighbour.pids()
        return pids
