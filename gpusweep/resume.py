"""``--resume``: what a dead orchestrator left running is ended and recorded before the
sweep goes on.

The journal names every trial that started and never ended; each is ended by its token
(so a PID reused since cannot be hit), and the GPU wait runs once over all of them, before
the new baseline, so the orphans' memory is never taken for the machine's own.
"""

from __future__ import annotations

from gpusweep.cleanup import WaitResult, wait_until_clean
from gpusweep.session import SweepSession


def resume(session: SweepSession) -> None:
    """End the orphans, let the source decide what runs again, and wait until the GPU let
    the orphans go; each orphan's record carries that wait's verdict."""
    recorder, isolation = session.recorder, session.spec.isolation
    orphans = recorder.restore()
    session.rerun_records = recorder.reruns_started  # each replaced a killed record
    ended = [recorder.end_orphan(entry, isolation.stop.grace_s) for entry in orphans]
    orphan_pids = {pid for end in ended for pid in end.ended_pids}
    waits: list[WaitResult] = [
        wait_until_clean(device, None, orphan_pids, isolation.wait)
        for device in (session.devices if orphan_pids else ())]
    session.source.restored(session, [recorder.orphan_ended(entry, end, waits)
                                      for entry, end in zip(orphans, ended, strict=True)])
