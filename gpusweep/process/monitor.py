"""A thread in the orchestrator that samples a trial's whole process tree.

Each sample sums the RSS of every process in the tree (psutil) and reads the device (NVML,
through :class:`gpusweep.gpu.track.GpuTrack`): used memory of the whole device, the memory
held by the tree's own pids, foreign memory, utilization. It keeps the peaks, every
process identity it has seen (so cleanup can find orphans later), and writes ``memory.csv``
(t, rss_mb, gpu_used_mb, gpu_tree_mb) for the report.

It also sums the tree's RSS without wandb's service processes (``wandb-core`` and below): under
offline W&B that service is part of the tree and its RSS swings by hundreds of MB, which would
drown what the trial's size costs, and a process counts there only from its second sample on
(a fork caught before its exec shows its parent's RSS twice). The memory model learns from
that figure; the host_oom guard still watches the whole tree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpusweep.cleanup import ProcessKey
from gpusweep.gpu.device import Device
from gpusweep.gpu.track import GpuTrack
from gpusweep.hostmemory import available_mb
from gpusweep.process import proctree


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the trial started
    rss_mb: float
    gpu_used_mb: float | None
    gpu_tree_mb: float | None
    cpu_s: float  # CPU seconds the tree has used so far (user + system)
    processes: int
    available_mb: float | None = None  # the machine's available memory
    rss_trial_mb: float | None = None  # rss_mb without wandb's service processes


@dataclass(frozen=True)
class Peaks:
    rss_mb: float | None
    gpu_used_mb: float | None
    gpu_tree_mb: float | None
    min_available_mb: float | None = None
    rss_trial_mb: float | None = None  # rss_mb without wandb's service processes


def _max(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else max(current, value)


class Monitor:
    """Samples the tree rooted at ``root_pid`` at ``hz`` until :meth:`stop`.

    ``launcher_pid`` is the trial's launcher, a subreaper: every orphan of the trial is
    reparented to it, so its whole subtree is the trial's, but the launcher itself is not part
    of the trial (neither counted nor remembered as seen). ``neighbour_pids`` gives the pids
    of the other trials on the same device (their GPU memory is not this trial's).
    """

    def __init__(self, root_pid: int, device: Device, hz: float, csv_path: str | None,
                 launcher_pid: int | None = None,
                 neighbour_pids: Callable[[], set[int]] | None = None) -> None:
        self._device = device
        self._launcher = launcher_pid
        self.gpu = GpuTrack(device, neighbour_pids)  # its summary goes into the record
        self._interval = 1.0 / hz
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tracked: dict[int, proctree.ProcStat] = {}  # alive at the last sample
        self._cpu_of_gone = 0.0
        self._seen: dict[int, float] = {}  # pid -> create_time, every process ever seen
        self._peaks = Peaks(None, None, None)
        self._service: dict[int, tuple[str, bool]] = {}  # pid -> (comm, is wandb's service)
        self.last: Sample | None = None
        self.errors = 0
        self.last_error: str | None = None
        root = proctree.read(root_pid)
        if root is not None:
            self._tracked[root_pid] = root
            self._seen[root_pid] = root.create_time
        self._csv = open(csv_path, "w", encoding="utf-8", buffering=1) if csv_path else None  # noqa: SIM115 (closed in stop)
        if self._csv:
            self._csv.write("t,rss_mb,gpu_used_mb,gpu_tree_mb\n")
        self._thread = threading.Thread(target=self._run, name="gpusweep-monitor", daemon=True)

    def start(self) -> Monitor:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and close memory.csv."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.gpu.stop()
        with self._lock:
            if self._csv:
                self._csv.close()
                self._csv = None

    @property
    def seen(self) -> list[ProcessKey]:
        """Every (pid, create_time) that was ever part of the tree."""
        with self._lock:
            return list(self._seen.items())

    @property
    def peaks(self) -> Peaks:
        with self._lock:
            return self._peaks

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except Exception as exc:  # a bad read must not blind the guards for the trial
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"

    def sample(self) -> Sample:
        """Take one sample of the tree now (also called by tests and at the start)."""
        tree = self._current_tree()
        rss = sum(p.rss_mb for p in tree.values())
        # A process counts for the trial from its second sample on: a fork caught before its
        # exec (wandb starting wandb-core) shows the parent's whole RSS a second time.
        rss_trial = sum(tree[pid].rss_mb for pid in self._trial_pids(tree)
                        if pid in self._tracked)
        cpu = sum(p.cpu_s for p in tree.values())
        available = available_mb()
        gpu = self.gpu.sample(set(tree))  # only this thread samples (start() runs before it)
        gpu_used, gpu_tree = gpu.used_mb, gpu.tree_mb
        with self._lock:
            # CPU time of processes that have gone still counts towards the tree's total.
            self._cpu_of_gone += sum(p.cpu_s for pid, p in self._tracked.items()
                                     if pid not in tree)
            self._tracked = tree
            sample = Sample(time.monotonic() - self._start, rss, gpu_used, gpu_tree,
                            self._cpu_of_gone + cpu, len(tree), available, rss_trial)
            self.last = sample
            low = self._peaks.min_available_mb
            self._peaks = Peaks(_max(self._peaks.rss_mb, rss if tree else None),
                                _max(self._peaks.gpu_used_mb, gpu_used),
                                _max(self._peaks.gpu_tree_mb, gpu_tree),
                                _min(low, available),
                                _max(self._peaks.rss_trial_mb, rss_trial if tree else None))
            if self._csv:
                self._csv.write(f"{sample.t:.3f},{rss:.1f},{_fmt(gpu_used)},{_fmt(gpu_tree)}\n")
        return sample

    def _trial_pids(self, tree: dict[int, proctree.ProcStat]) -> list[int]:
        """The tree's pids less wandb's service processes and their children. A process is
        classified again when its command name changes (a fork that then execs wandb-core)."""
        service: set[int] = set()
        for pid, stat in tree.items():
            known = self._service.get(pid)
            if known is None or known[0] != stat.comm:
                known = (stat.comm, proctree.is_wandb_service(stat.comm, proctree.cmdline(pid)))
                self._service[pid] = known
            if known[1]:
                service.add(pid)
        return trial_pids({pid: stat.ppid for pid, stat in tree.items()}, service)

    def _current_tree(self) -> dict[int, proctree.ProcStat]:
        """Every live process below the tracked ones' roots (orphans stay tracked)."""
        previous = self._tracked
        roots = [pid for pid, p in previous.items() if p.ppid not in previous
                 and _same_process(pid, p.create_time)]  # not a reused pid's children
        if self._launcher is not None:
            roots.append(self._launcher)
        tree: dict[int, proctree.ProcStat] = {}
        for pid in proctree.descendants(roots):
            if pid == self._launcher:
                continue
            stat = proctree.read(pid)
            if stat is None or stat.zombie:
                continue
            known = self._seen.get(pid)
            if known is not None and abs(known - stat.create_time) > 0.01:
                continue  # the pid was reused by a process that is not ours
            tree[pid] = stat
        with self._lock:
            for pid, stat in tree.items():
                self._seen.setdefault(pid, stat.create_time)
        return tree


def trial_pids(parents: dict[int, int], service: set[int]) -> list[int]:
    """The pids of ``parents`` (pid -> ppid) that are neither in ``service`` nor below one."""
    def excluded(pid: int) -> bool:
        seen: set[int] = set()
        while pid in parents and pid not in seen:
            if pid in service:
                return True
            seen.add(pid)
            pid = parents[pid]
        return False
    return [pid for pid in parents if not excluded(pid)]


def _same_process(pid: int, create_time: float) -> bool:
    stat = proctree.read(pid)
    return stat is not None and abs(stat.create_time - create_time) <= 0.01


def _min(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else min(current, value)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
