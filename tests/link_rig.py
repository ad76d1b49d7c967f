"""Real Ableton Link peers for tests and the benchmark, only ever in a private network namespace.

Link peers find each other by multicast on every network interface, and no
packet may leave this machine. So nothing here starts a peer unless
:func:`require_private_netns` has checked that this process is in a network
namespace made for it: a different namespace than the one it was launched
from, with no interface but loopback. :func:`run_in_private_netns` makes one
(``unshare --net``, root only), raises loopback with a multicast route in it,
and runs a module there; everything started from inside (jackd, the peer, the
performer, the recorder) inherits the namespace.

JACK needs no network: jackd and its clients talk over unix sockets and
shared memory, so a private server inside the namespace works as outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

OUTER_ENV = "DP_LINK_OUTER_NETNS"  # the inode of the namespace the run was launched from


def netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def interfaces() -> list[str]:
    """Network interfaces of *this process's* namespace (/proc/self/net is per namespace;
    /sys/class/net is not, unless sysfs was remounted)."""
    with open("/proc/self/net/dev") as f:
        return [line.split(":", 1)[0].strip() for line in f.readlines()[2:]]


def netns_problem() -> str | None:
    """Why this process must not start a Link peer, or None when it may."""
    outer = os.environ.get(OUTER_ENV)
    if not outer:
        return "not launched through run_in_private_netns (no record of the outer namespace)"
    if str(netns_inode()) == outer:
        return f"still in the launching network namespace (inode {outer})"
    ifs = interfaces()
    if ifs != ["lo"]:
        return f"this namespace has interfaces besides loopback: {ifs}"
    return None


def require_private_netns() -> None:
    why = netns_problem()
    if why:
        raise SystemExit(f"refusing to start a Link peer: {why}")


def unavailable() -> str | None:
    """Why real Link peers cannot run here (a skip reason), or None."""
    if not sys.platform.startswith("linux"):
        return "private network namespaces need Linux"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) missing"
    if os.geteuid() != 0:
        return "unshare --net needs root here"
    try:
        import link  # noqa: F401
    except ImportError:
        return "the Link binding is not installed (pip install 'drum-performer[link]')"
    return None


def setup_loopback() -> None:
    """Inside a fresh namespace only: loopback up, multicast on it, multicast routed to it."""
    if str(netns_inode()) == os.environ.get(OUTER_ENV):
        raise SystemExit("refusing to configure the launching namespace's loopback")
    for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
                ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]):
        subprocess.run(cmd, check=True, capture_output=True)


def run_in_private_netns(module: str, args: list[str], timeout: float | None = None,
                         capture: bool = False) -> subprocess.CompletedProcess:
    """``python -m module args`` in a new network namespace of its own (which dies with it)."""
    env = dict(os.environ)
    env[OUTER_ENV] = str(netns_inode())
    return subprocess.run(["unshare", "--net", "--", sys.executable, "-m", module, *args],
                          env=env, timeout=timeout, text=True, capture_output=capture)


class Peer:
    """The other Link peer: ``python -m tests.link_peer`` in this namespace, driven by lines."""

    def __init__(self, bpm: float = 120.0, env: dict | None = None, timeout: float = 10.0) -> None:
        require_private_netns()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.link_peer", "--bpm", f"{bpm:g}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1, env=env)
        self._lock = threading.Lock()
        first = self._read(timeout)
        if not first.get("ready"):
            raise RuntimeError(f"the Link peer did not start: {first}")

    def _read(self, timeout: float) -> dict:
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            raise RuntimeError("the Link peer did not answer")
        return json.loads(box[0])

    def ask(self, command: str, timeout: float = 5.0) -> dict:
        with self._lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return self._read(timeout)

    def wait_peers(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ask("peers")["peers"] >= n:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                self.ask("quit", timeout=2.0)
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3.0)


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
