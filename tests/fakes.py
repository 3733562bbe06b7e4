"""Fakes at the hardware boundary only: a GPU that replays memory readings (no NVML here)."""

from __future__ import annotations

from collections.abc import Sequence

from gpusweep.gpu.device import DeviceInfo, Namespace


class FakeDevice:
    """FAKE GPU: ``used_mb()`` replays ``readings`` (the last one repeats forever).

    ``holders`` replays the pid -> MB maps that NVML's per-process query would return.
    """

    is_gpu = True
    last_error = None
    lists_error = None

    def __init__(self, readings: Sequence[float], holders: Sequence[dict[int, float]] = ({},),
                 name: str = "FakeGPU", uuid: str = "GPU-fake-0000", index: int = 0) -> None:
        self.info = DeviceInfo(name=name, uuid=uuid, index=index, total_mb=16000.0)
        self.namespace = Namespace.UNKNOWN
        self._readings = list(readings)
        self._holders = list(holders)
        self.reads = 0
        self.holder_reads = 0

    def used_mb(self) -> float:
        value = self._readings[min(self.reads, len(self._readings) - 1)]
        self.reads += 1
        return value

    def free_mb(self) -> float:
        return self.info.total_mb - self._readings[min(self.reads, len(self._readings) - 1)]

    def process_memory_mb(self) -> dict[int, float]:
        value = self._holders[min(self.holder_reads, len(self._holders) - 1)]
        self.holder_reads += 1
        return dict(value)

    def utilization(self) -> float | None:
        return None

    def energy_mj(self) -> float | None:
        return None


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
