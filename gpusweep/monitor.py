"""A thread in the orchestrator that samples a trial's whole process tree.

Each sample sums the RSS of every process in the tree (psutil) and reads the device (NVML):
used memory of the whole device and the memory held by the tree's own pids. It keeps the
peaks, every process identity it has seen (so cleanup can find orphans later), and writes
``memory.csv`` (t, rss_mb, gpu_used_mb, gpu_tree_mb) for the report.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

from gpusweep.cleanup import ProcessKey
from gpusweep.device import Device

_MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the trial started
    rss_mb: float
    gpu_used_mb: float | None
    gpu_tree_mb: float | None
    cpu_s: float  # CPU seconds the tree has used so far (user + system)
    processes: int
    available_mb: float | None = None  # the machine's available memory


@dataclass(frozen=True)
class Peaks:
    rss_mb: float | None
    gpu_used_mb: float | None
    gpu_tree_mb: float | None
    min_available_mb: float | None = None


def _max(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else max(current, value)


class Monitor:
    """Samples the tree rooted at ``root_pid`` at ``hz`` until :meth:`stop`."""

    def __init__(self, root_pid: int, device: Device, hz: float, csv_path: str | None) -> None:
        self._device = device
        self._interval = 1.0 / hz
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tracked: dict[int, psutil.Process] = {}
        self._cpu_of_gone = 0.0
        self._cpu_last: dict[int, float] = {}
        self._seen: dict[int, float] = {}
        self._peaks = Peaks(None, None, None)
        self.last: Sample | None = None
        try:
            root = psutil.Process(root_pid)
            self._tracked[root_pid] = root
            self._seen[root_pid] = root.create_time()
        except psutil.Error:
            pass
        self._csv = open(csv_path, "w", encoding="utf-8", buffering=1) if csv_path else None  # noqa: SIM115 (closed in stop)
        if self._csv:
            self._csv.write("t,rss_mb,gpu_used_mb,gpu_tree_mb\n")
        self._thread = threading.Thread(target=self._run, name="gpusweep-monitor", daemon=True)

    def start(self) -> Monitor:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (one last sample first) and close memory.csv."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
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
            self.sample()

    def sample(self) -> Sample:
        """Take one sample of the tree now (also called by tests and at the end)."""
        procs = self._current_tree()
        rss = 0.0
        cpu = 0.0
        alive_cpu: dict[int, float] = {}
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss / _MB
                    times = proc.cpu_times()
                    used = times.user + times.system
            except psutil.Error:
                continue
            alive_cpu[proc.pid] = used
            cpu += used
        available = psutil.virtual_memory().available / _MB
        gpu_used = self._device.used_mb()
        gpu_tree = None
        if self._device.is_gpu:
            per_pid = self._device.process_memory_mb()
            gpu_tree = sum(per_pid.get(p.pid, 0.0) for p in procs)
        with self._lock:
            # CPU time of processes that have gone still counts towards the tree's total.
            self._cpu_of_gone += sum(v for pid, v in self._cpu_last.items()
                                     if pid not in alive_cpu)
            self._cpu_last = alive_cpu
            sample = Sample(time.monotonic() - self._start, rss, gpu_used, gpu_tree,
                            self._cpu_of_gone + cpu, len(alive_cpu), available)
            self.last = sample
            low = self._peaks.min_available_mb
            self._peaks = Peaks(_max(self._peaks.rss_mb, rss if alive_cpu else None),
                                _max(self._peaks.gpu_used_mb, gpu_used),
                                _max(self._peaks.gpu_tree_mb, gpu_tree),
                                available if low is None else min(low, available))
            if self._csv:
                self._csv.write(f"{sample.t:.3f},{rss:.1f},{_fmt(gpu_used)},{_fmt(gpu_tree)}\n")
        return sample

    def _current_tree(self) -> list[psutil.Process]:
        """Tracked processes still alive, plus all their descendants (new ones tracked)."""
        tree: dict[int, psutil.Process] = {}
        for pid, proc in list(self._tracked.items()):
            if not _running(proc):
                del self._tracked[pid]
                continue
            tree[pid] = proc
        for proc in [p for p in tree.values() if _ppid(p) not in tree]:  # forest roots only
            for child in _children(proc):
                tree.setdefault(child.pid, child)
        with self._lock:
            for pid, proc in tree.items():
                if pid not in self._tracked:
                    self._tracked[pid] = proc
                    try:
                        self._seen[pid] = proc.create_time()
                    except psutil.Error:
                        pass
        return list(tree.values())


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
