"""Real filesystems that fail on purpose, for the tests of a logdir whose storage refuses writes: a small tmpfs
and a ballast that fills it; and what the event files of a directory tree hold, counted."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
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
