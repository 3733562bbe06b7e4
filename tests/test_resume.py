"""Resume: what a dead orchestrator left running is ended, and nothing else."""

import subprocess
import sys
import time

from gpusweep.config import parse_sweep
from gpusweep.recorder import SweepRecorder


def test_resume_does_not_kill_a_stranger_that_got_the_old_process_group(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                start_new_session=True)
    try:
        spec = parse_sweep({"method": "grid", "command": ["true"],
                            "parameters": {"x": {"values": [1]}}}, "s.yaml")
        recorder = SweepRecorder(str(tmp_path), "abc", spec)
        recorder.prepare(resume=False)
        entry = {"event": "start", "run": "r1", "params": {"x": 1}, "token": "dead-token",
                 "pgid": stranger.pid, "t": time.time()}
        record, ended = recorder.close_orphan(entry, grace_s=1)
        assert record.status.value == "killed" and ended == set()
        assert stranger.poll() is None  # still running
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
