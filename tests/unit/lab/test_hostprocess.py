"""Host processes die with the lab, even when the lab is killed with -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from experiment_lab.hostprocess import Component

LAB = """
import sys, time
from pathlib import Path
from experiment_lab.hostprocess import Component
child = Component("sleep", ["sleep", "300"], Path(sys.argv[1]))
child.start()
print(child.process.pid, flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_child_is_killed_when_the_lab_is_killed(tmp_path: Path) -> None:
    lab = subprocess.Popen(
        [sys.executable, "-c", LAB, str(tmp_path / "sleep.log")], stdout=subprocess.PIPE, text=True
    )
    assert lab.stdout is not None
    child = int(lab.stdout.readline())
    assert alive(child)
    lab.send_signal(signal.SIGKILL)
    lab.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_stop_uses_the_stop_signal(tmp_path: Path) -> None:
    script = "import signal, sys, time\nsignal.signal(signal.SIGINT, lambda *_: sys.exit(7))\n"
    script += "print('ready', flush=True)\ntime.sleep(300)\n"
    log = tmp_path / "py.log"
    child = Component("py", [sys.executable, "-u", "-c", script], log, stop_signal=signal.SIGINT)
    child.start()
    child.wait_healthy(lambda: "ready" in log.read_text())
    process = child.process
    assert process is not None
    child.stop()
    assert process.returncode == 7
    assert not child.running()
