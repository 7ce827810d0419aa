"""Where the machine's CPU went during a measured window.

The control plane, kwok, the operator and the benchmark share the machine's cores. When they
are busy all the time, a burst is bound by CPU, and the operator's time relative to the floor
is the CPU its run costs relative to the floor's: its own, and what its requests and watches
cost the API server and etcd. This module measures that per process, and the idle remainder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from experiment_lab.controlplane import ControlPlane

TICKS = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (utime and stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def idle_seconds() -> float:
    """Idle + iowait time of all cores so far (first line of /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[4]) + int(fields[5])) / TICKS


def _read(pids: Mapping[str, int]) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            seconds[name] = process_seconds(pid)
        except OSError:  # it exited: counted up to its last reading
            continue
    return seconds


@dataclass
class CpuWindow:
    """CPU seconds of named processes (and of nothing: idle) from creation to `close()`."""

    pids: dict[str, int]
    _start: dict[str, float] = field(init=False)
    _idle: float = field(init=False)
    _wall: float = field(init=False)

    def __post_init__(self) -> None:
        self._start, self._idle, self._wall = _read(self.pids), idle_seconds(), time.monotonic()

    def close(self) -> dict[str, float]:
        """Seconds per process, `idle`, `wall` and `capacity` (wall x cores) of the window."""
        end = _read(self.pids)
        wall = time.monotonic() - self._wall
        start = self._start
        used = {name: round(end[name] - start[name], 1) for name in end if name in start}
        return {
            **used,
            "idle": round(idle_seconds() - self._idle, 1),
            "wall": round(wall, 1),
            "capacity": round(wall * (os.cpu_count() or 1), 1),
        }


def busy_seconds(window: Mapping[str, float]) -> float:
    """CPU seconds the measured processes used in a window (`CpuWindow.close`'s result)."""
    return round(sum(v for k, v in window.items() if k not in ("idle", "wall", "capacity")), 1)


def control_plane_pids(plane: ControlPlane) -> dict[str, int]:
    """Each running component of a lab control plane (etcd, kube-apiserver, …) by name."""
    return {
        name: component.process.pid
        for name, component in plane.components.items()
        if component.process is not None and component.running()
    }
