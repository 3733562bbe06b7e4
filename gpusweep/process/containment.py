"""What holds one trial's processes: its launcher (a subreaper) and, where the machine
delegates cgroup v2, a cgroup of its own.

Why a launcher per trial rather than the orchestrator as the subreaper: an orphan reparents
to the nearest subreaper, so with one launcher per trial every orphan lands in its own
trial's tree, with several slots too, by construction; the orchestrator would receive the
orphans of all its trials with nothing to tell whose they are. And the launcher outlives the
orchestrator: ``PR_SET_PDEATHSIG`` tells it the orchestrator died (SIGKILL, the OOM killer),
and it ends its tree within the grace period as a normal stop would.

:class:`~gpusweep.trialrun.RunningTrial` starts and ends its trial through this; the record
says which containment held the trial (``subreaper`` or ``cgroup``) and, where useful, why a
cgroup was not used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from gpusweep.cleanup import EndResult, ProcessKey, end_tree
from gpusweep.isolation import IsolationConfig
from gpusweep.process import cgroup, launcher
from gpusweep.process.cgroup import Containment, TrialCgroup
from gpusweep.process.trialprocess import TrialProcess
from gpusweep.records.layout import TrialPaths


@dataclasses.dataclass
class TrialContainment:
    """A started trial's launcher, its cgroup (or None), and what the record says of them."""

    process: TrialProcess
    cgroup: TrialCgroup | None
    note: str | None = None  # why no cgroup (or no memory files), for the record
    peak_mb: float | None = None  # memory.peak, read once the tree is gone
    oom_kills: int | None = None  # the kernel's OOM kills in the trial's cgroup

    @property
    def kind(self) -> str:
        return "cgroup" if self.cgroup is not None else "subreaper"

    def end(self, token: str, seen: Iterable[ProcessKey], grace_s: float) -> EndResult:
        """End the whole tree (the launcher's stop, then the second net), read the cgroup's
        memory figures and remove it."""
        group = self.cgroup
        result = end_tree(self.process.pid, token, seen, grace_s, launcher=self.process,
                          members=group.pids if group else None)
        if group is not None:
            self.peak_mb, self.oom_kills = group.peak_mb(), group.oom_kills()
            left = group.remove()
            if left:
                result = dataclasses.replace(
                    result, leftover=tuple(sorted({*result.leftover, *left})))
        self.process.close()
        return result


def end_orphan(name: str, token: str | None, grace_s: float) -> EndResult:
    """End what a dead orchestrator left of one trial (``--resume``): whatever carries its
    token or is still in its cgroup (found by its name); then remove that cgroup."""
    group = TrialCgroup.existing(cgroup.detect(), name)
    result = end_tree(None, token, (), grace_s, members=group.pids if group else None)
    left = group.remove() if group else []
    if left:
        result = dataclasses.replace(result, leftover=tuple(sorted({*result.leftover, *left})))
    return result


def choose(isolation: IsolationConfig) -> Containment:
    """What this trial gets: a cgroup where the machine allows it (detected once)."""
    if isolation.containment == "subreaper":
        return Containment("subreaper", note="isolation.containment is subreaper")
    return cgroup.detect()


def start(argv: list[str], env: Mapping[str, str], paths: TrialPaths, *, name: str,
          isolation: IsolationConfig) -> TrialContainment:
    """Start the trial through its launcher, in a cgroup of its own when there is one.

    ``isolation.limits.rss_mb`` becomes the cgroup's ``memory.max`` where the memory
    controller is there. A cgroup that cannot be made or joined leaves the trial to the
    subreaper alone, and the record says why.
    """
    containment = choose(isolation)
    note = containment.note
    group = None
    if containment.kind == "cgroup":
        try:
            group = TrialCgroup.create(containment, name, isolation.limits.rss_mb)
        except OSError as exc:
            note = f"cannot create the trial's cgroup: {exc.strerror or exc}"
    try:
        process = launcher.start(argv, env, paths, grace_s=isolation.stop.grace_s,
                                 cgroup=group.path if group else None)
    except BaseException:
        if group is not None:
            group.remove()
        raise
    if process.notes:
        note = "; ".join(process.notes)
        if group is not None and any("cgroup" in n for n in process.notes):
            group.remove()
            group = None
    return TrialContainment(process, group, note)
