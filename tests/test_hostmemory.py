"""The host's memory as trials can use it: a container's memory cgroup counts."""

from gpusweep.hostmemory import cgroup_room_mb


def test_container_memory_room():
    gib = 2**30
    assert cgroup_room_mb(None, gib, 0) is None  # no limit
    assert cgroup_room_mb(2**63 - 4096, gib, 0) is None  # cgroup v1's "no limit"
    assert cgroup_room_mb(2 * gib, gib + gib // 2, gib // 4) == 768.0  # cache is reclaimed
    assert cgroup_room_mb(gib, 2 * gib, 0) == 0.0
