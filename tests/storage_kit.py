"""Real filesystems that fail on purpose, for the tests of a logdir whose storage refuses writes: a small tmpfs
and a ballast that fills it; a FUSE passthrough that fails chosen calls on chosen paths on command
(``tests/faultfs.py``); and what the event files of a directory tree hold, counted."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hf_summary.verify import iter_events


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs at ``path`` (root with CAP_SYS_ADMIN only; the test is skipped otherwise); unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full (down to its last byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 8 or 1]
    finally:
        os.close(fd)


def tag_steps(root: Path) -> Counter:
    """How many times each ``(run dir, tag, step)`` occurs in the event files under ``root``."""
    counts: Counter = Counter()
    for run, event in iter_events(root):
        for value in event.summary.value:
            counts[(run, value.tag, event.step)] += 1
    return counts


FAULTFS = Path(__file__).resolve().parent / "faultfs.py"
MOUNT_TIMEOUT_S = 20.0


@dataclass
class FaultFS:
    """A mounted :mod:`faultfs`: ``mount`` passes through to ``root``; :meth:`fail` and :meth:`clear` command it."""

    root: Path
    mount: Path
    rules: Path

    def fail(self, ops: list[str], glob: str, error: int, delay_s: float = 0.0) -> None:
        """From now on, calls in ``ops`` on paths matching ``glob`` wait ``delay_s`` and fail with ``error``."""
        self._write([{"ops": ops, "glob": glob, "errno": error, "delay_s": delay_s}])

    def clear(self) -> None:
        self._write([])

    def _write(self, rules: list[dict]) -> None:
        staged = self.rules.with_suffix(".tmp")
        staged.write_text(json.dumps(rules))
        os.replace(staged, self.rules)


class FaultFSUnavailable(Exception):
    """The fault-injecting filesystem cannot be mounted here; the message says why."""


@contextlib.contextmanager
def fault_fs(base: Path) -> Iterator[FaultFS]:
    """`mounted_fault_fs`, skipping the test when it cannot be mounted here."""
    try:
        with mounted_fault_fs(base) as fs:
            yield fs
    except FaultFSUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def mounted_fault_fs(base: Path) -> Iterator[FaultFS]:
    """Mount a fault-injecting FUSE passthrough of `base/root` at `base/mount`; unmounted, and its process ended,
    after. Raises `FaultFSUnavailable` without FUSE, root or mfusepy."""
    if importlib.util.find_spec("mfusepy") is None:
        raise FaultFSUnavailable("the fault-injecting filesystem needs mfusepy (the test extra)")
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0 or not (shutil.which("fusermount3") or
                                                                   shutil.which("fusermount")):
        raise FaultFSUnavailable("the fault-injecting filesystem needs root, /dev/fuse and fusermount")
    fs = FaultFS(base / "root", base / "mount", base / "rules.json")
    fs.root.mkdir(parents=True, exist_ok=True)
    fs.mount.mkdir()
    fs.clear()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, str(FAULTFS), str(fs.root), str(fs.mount), str(fs.rules)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not os.path.ismount(fs.mount):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()  # (when it is still trying) so that its stderr ends
                _, stderr = proc.communicate()
                raise FaultFSUnavailable(f"cannot mount the fault-injecting filesystem: {stderr.decode()[-500:]}")
            time.sleep(0.05)
        yield fs
    finally:
        fs.clear()
        fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
        subprocess.run([fusermount, "-u", str(fs.mount)], capture_output=True)
        if os.path.ismount(fs.mount):
            subprocess.run(["umount", "-l", str(fs.mount)], capture_output=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
