"""Two "hosts" that see one directory, on one machine: two FUSE mounts (Debian's ``bindfs``) of one backing
directory, each used from processes in a UTS + PID namespace of their own (``unshare``: own hostname, blind to
the other's processes). Like two NFS clients, the mounts share no page cache and no mmap'ed file.

``locks="forwarded"`` passes byte-range locks through to the backing directory, so both hosts see them (NFSv4
with its lock manager); ``locks="local"`` keeps each mount's locks to itself (Lustre ``localflock``, NFS
``nolock``). Processes join a host's namespaces with ``nsenter``; ``Host.kill`` SIGKILLs
the namespace's init, which kills every process of the host, as when a node is lost. Teardown kills what is left and unmounts, even when
the test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import REPO_ROOT, wait_until

LOCK_MODES = ("forwarded", "local")
_BINDFS_LOCKS = {"forwarded": ("--multithreaded", "--enable-lock-forwarding"), "local": ()}


def _missing() -> str | None:
    """Why two hosts cannot be emulated here, or None."""
    if os.geteuid() != 0:
        return "needs root (FUSE mounts and UTS namespaces)"
    if not Path("/dev/fuse").exists():
        return "needs /dev/fuse"
    for tool in ("bindfs", "unshare", "nsenter", "hostname"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian: apt-get install bindfs fuse3)"
    probe = subprocess.run(["unshare", "--uts", "--pid", "--fork", "--mount-proc", "hostname", "probe"],
                           capture_output=True)
    if probe.returncode != 0:
        return f"UTS + PID namespaces are not available: {probe.stderr.decode(errors='replace').strip()}"
    return None


SKIP_REASON = _missing()
needs_two_hosts = pytest.mark.skipif(SKIP_REASON is not None, reason=f"two emulated hosts: {SKIP_REASON}")


_REAPER = """
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""


@dataclass
class Host:
    """One host: its name, its mount of the shared directory, and (once started) the init of its namespaces,
    which reaps orphans (an uploader outliving its trainer) as a real init would."""

    name: str
    mount: Path
    init: subprocess.Popen | None = None
    init_pid: int = 0  # the namespace's init as this machine sees it
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> None:
        self.init = subprocess.Popen(
            ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child",
             "sh", "-c", 'hostname "$0" && exec "$1" -c "$2"', self.name, sys.executable, _REAPER],
            stderr=subprocess.DEVNULL)  # unshare complains when its child is SIGKILLed: that is how a host ends
        self.init_pid = wait_until(self._namespace_init, timeout=10, message=f"host {self.name} to start")

    def _namespace_init(self) -> int | None:
        import psutil

        try:
            (child,) = psutil.Process(self.init.pid).children()
            return child.pid if "-c" in child.cmdline() and child.cmdline()[0] == sys.executable else None
        except (psutil.NoSuchProcess, ValueError):
            return None

    def path(self, relative: str | Path = "") -> Path:
        """Where ``relative`` (a path under the shared directory) is seen from this host."""
        return self.mount / relative

    def popen(self, *argv: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start ``argv`` on this host (``PYTHONPATH`` set to the repository); the caller reads its pipes."""
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        process = subprocess.Popen(
            ["nsenter", f"--target={self.init_pid}", "--uts", "--pid", "--mount", "--", *argv], env=full_env, **kwargs)
        self.processes.append(process)
        return process

    def cli(self, *args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
        """``hf-summary ARGS`` on this host, to the end."""
        process = self.popen(sys.executable, "-m", "hf_summary", *args, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                self.kill()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def pids(self) -> list[int]:
        """Pids (as this machine sees them) of every process running on this host, its init included."""
        import psutil

        try:
            init = psutil.Process(self.init_pid)
            return [init.pid, *(child.pid for child in init.children(recursive=True))] + [
                process.pid for process in self.processes if process.poll() is None]
        except psutil.NoSuchProcess:
            return [process.pid for process in self.processes if process.poll() is None]

    def kill(self) -> None:
        """SIGKILL the namespace's init, which takes every process of the host with it: the host is lost."""
        if self.init is None:
            return
        if self.init.poll() is None:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.init.wait(30)
        for process in self.processes:
            process.wait(30)  # nsenter ends with its child, killed with the namespace


@dataclass
class TwoHosts:
    backing: Path
    one: Host
    two: Host
    locks: str


def _mount(backing: Path, mount: Path, locks: str) -> None:
    mount.mkdir(parents=True)
    subprocess.run(["bindfs", *_BINDFS_LOCKS[locks], str(backing), str(mount)], check=True, capture_output=True)
    wait_until(lambda: os.path.ismount(mount), timeout=10, message=f"bindfs to mount {mount}")


def _unmount(mount: Path) -> None:
    if not os.path.ismount(mount):
        return
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:  # still busy: detach it now, the kernel finishes when it is free
            subprocess.run(["umount", "--lazy", str(mount)], check=True)
            break
        time.sleep(0.1)


@contextmanager
def two_hosts(tmp_path: Path, locks: str) -> Iterator[TwoHosts]:
    """Hosts ``node-one`` and ``login-two`` seeing ``tmp_path/shared`` through mounts of their own."""
    if SKIP_REASON is not None:
        pytest.skip(f"two emulated hosts: {SKIP_REASON}")
    backing = tmp_path / "shared"
    backing.mkdir()
    hosts = TwoHosts(backing, Host("node-one", tmp_path / "host-one"), Host("login-two", tmp_path / "host-two"), locks)
    try:
        for host in (hosts.one, hosts.two):
            _mount(backing, host.mount, locks)
            host.start()
        yield hosts
    finally:
        for host in (hosts.one, hosts.two):
            host.kill()
        for host in (hosts.one, hosts.two):
            _unmount(host.mount)
