"""bench/peers.py's premises, without running any peer: the daemons its trial leaves are
what they claim to be, and a runner that is not installed is skipped with the reason."""

import os
import subprocess
import sys

import psutil
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))

from bench import peers  # noqa: E402

TRIAL = ROOT / "bench" / "programs" / "peer_trial.py"


def leave(kind, tmp_path, tag):
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [sys.executable, str(TRIAL), "--i", "1", "--events", str(events), "--daemon", kind,
         "--tag", tag, "--report", "stdout"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PEERS_TEST_MARK="kept"))
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[:2] for line in proc.stdout.splitlines()] == [
        ["report", "0"], ["report", "1"], ["report", "2"]]
    assert events.read_text().count("\n") == 1
    found = peers.daemons(tag)
    assert len(found) == 1, "the trial should have left exactly one daemon"
    return found[0]


@pytest.mark.parametrize("kind", ["setsid", "emptyenv"])
def test_the_trial_leaves_one_daemon_in_its_own_session(kind, tmp_path):
    tag = f"test-{os.getpid()}-{kind}"
    try:
        daemon = leave(kind, tmp_path, tag)
        assert os.getsid(daemon.pid) != os.getsid(0)  # out of the trial's session
        environ = daemon.environ()
        if kind == "emptyenv":
            assert environ == {}  # nothing of the trial's environment: no token to find
            # double fork: the session's leader has exited, so it cannot get a terminal
            assert os.getsid(daemon.pid) != daemon.pid
        else:
            assert os.getsid(daemon.pid) == daemon.pid
            assert environ.get("PEERS_TEST_MARK") == "kept"
    finally:
        assert peers.kill_daemons(tag) == 1
    assert peers.daemons(tag) == []


def test_kill_daemons_by_prefix_ends_every_tag_of_a_run(tmp_path):
    prefix = f"test-{os.getpid()}-prefix-"
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        leave("setsid", tmp_path / str(n), f"{prefix}{n}")
    assert peers.kill_daemons(prefix, prefix=True) == 2
    assert peers.daemons(prefix, prefix=True) == []


def test_a_peer_that_is_not_installed_is_skipped_with_the_reason():
    absent = peers.Peer("nothing", ("no_such_module_for_peers",), peers.runner_command("ray"),
                        {})
    assert peers.missing(absent) == ("no_such_module_for_peers is not installed "
                                     "(pip install -e '.[peers]')")
    assert peers.measure(absent, trials=1, repeats=1, run_tag="x") == {
        "skipped": peers.missing(absent)}
    assert peers.missing(peers.PEERS[0]) is None  # gpusweep itself needs nothing more


def test_the_daemon_sleeps_bounded(tmp_path):
    """A daemon the benchmark could not kill still ends on its own."""
    tag = f"test-{os.getpid()}-bounded"
    try:
        daemon = leave("setsid", tmp_path, tag)
        assert f"time.sleep({peers_trial_daemon_s()})" in " ".join(daemon.cmdline())
    finally:
        peers.kill_daemons(tag)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                   for p in peers.daemons(tag))


def peers_trial_daemon_s():
    sys.path.insert(0, str(TRIAL.parent))
    from peer_trial import DAEMON_S

    return DAEMON_S
