"""The sweep's end: its state and exit code, the sweep record and the W&B summary run.

Whatever ended the sweep (the source said it is over, Ctrl-C or SIGTERM, an abort, a bug of
ours), the same record is written and the same summary run published, so a reader of the
sweep directory or of W&B always sees how it ended.
"""

from __future__ import annotations

import os

from gpusweep.errors import EXIT_INTERRUPTED, EXIT_OK, SweepAborted
from gpusweep.records import SweepState
from gpusweep.session import SweepSession
from gpusweep.status import StopReason
from gpusweep.wb.summary import agent_key, publish_summary


def outcome(interrupted: StopReason | None, source_exit: int | None) -> tuple[SweepState, int]:
    """A sweep whose loop returned: interrupted by a signal, or over; a source's own exit
    code (the W&B server stopped the sweep) wins over ours."""
    state, code = SweepState.FINISHED, EXIT_OK
    if interrupted:
        state, code = SweepState.INTERRUPTED, EXIT_INTERRUPTED
    return state, source_exit or code


def record_end(session: SweepSession, state: SweepState) -> None:
    """Write the sweep's final state and start the W&B summary run (a detached subprocess,
    in the trials' project)."""
    try:
        session.recorder.write_sweep(state, session.wall_s)
    except SweepAborted:
        pass  # the records cannot be written; those written before stay valid
    publish_summary(session.sweep_dir, state,
                    session.source.trial_environ(dict(os.environ)),
                    project=session.project, entity=session.options.entity,
                    agent=agent_key(session.sweep_dir),
                    backfill=not session.source.server_runs)
