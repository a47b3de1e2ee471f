"""Which filesystem a path is on, and whether other hosts may see it at the same time.

A logdir on a network filesystem (NFS, Lustre, GPFS, WekaFS, CephFS, BeeGFS, SMB, ...) or on FUSE (which may be
any of those, or a bind of one) can be read and written by two hosts at once. What works between processes of
one host does not between hosts there: SQLite's WAL index is shared memory (an mmap of `-shm`), two hosts'
page caches disagree, and byte-range locks may be local only (Lustre `localflock`, NFS `nolock`).
`filesystem_of` tells which case a path is in:

1. `HF_SUMMARY_SHARED_FS=1` (or `0`) in the environment decides, for users who know their filesystem better;
2. else the mount table (`/proc/self/mountinfo`): the mount whose device is the path's;
3. else (no mount table) `statfs(2)`'s filesystem magic number, on Linux.

A path that does not exist yet is judged by its nearest existing parent.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SHARED_FS_ENV = "HF_SUMMARY_SHARED_FS"
MOUNTINFO = Path("/proc/self/mountinfo")

NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "wekafs", "ceph", "beegfs", "cifs", "smb3", "smbfs", "9p", "afs",
    "glusterfs", "panfs", "orangefs", "pvfs2", "ocfs2", "gfs2", "virtiofs", "davfs", "ncpfs", "coda",
})

# statfs(2) f_type of the same, for systems without a readable mount table.
_MAGIC_TYPES = {
    0x6969: "nfs", 0x0BD00BD0: "lustre", 0x47504653: "gpfs", 0x00C36400: "ceph", 0x19830326: "beegfs",
    0xFF534D42: "cifs", 0xFE534D42: "smb3", 0x517B: "smbfs", 0x01021997: "9p", 0x5346414F: "afs",
    0x65735546: "fuse", 0x6F636673: "virtiofs", 0x7461636F: "ocfs2", 0x01161970: "gfs2",
}


@dataclass(frozen=True)
class Filesystem:
    """`type`: the mount table's name for it (`nfs4`, `fuse.sshfs`, `ext4`...) or `unknown`;
    `shared`: whether another host may see it too; `why`: how that was decided, for messages."""

    type: str
    shared: bool
    why: str


def is_shared_type(fs_type: str) -> bool:
    """Whether a filesystem type (as the mount table names it) may be seen by several hosts: a network
    filesystem, or FUSE (whatever it passes through)."""
    base = fs_type.lower()
    return base in NETWORK_TYPES or base == "fuse" or base == "fuseblk" or base.startswith("fuse.")


def filesystem_of(path: str | os.PathLike[str]) -> Filesystem:
    """The filesystem `path` is on; see the module docstring for how it is decided."""
    existing, device = _nearest_existing(Path(path))
    fs_type = _type_from_mount_table(device) or _type_from_statfs(existing) or "unknown"
    override = os.environ.get(SHARED_FS_ENV, "").strip()
    if override in ("0", "1"):
        return Filesystem(fs_type, override == "1", f"{SHARED_FS_ENV}={override}")
    return Filesystem(fs_type, is_shared_type(fs_type), f"{existing} is on {fs_type}")


def _nearest_existing(path: Path) -> tuple[Path, int | None]:
    """The path itself or its nearest existing parent, and its device (None when even `/` cannot be stat'ed)."""
    path = path.absolute()
    while True:
        try:
            return path, os.stat(path).st_dev
        except (FileNotFoundError, NotADirectoryError):
            if path == path.parent:
                return path, None
            path = path.parent
        except OSError:
            return path, None


def _type_from_mount_table(device: int | None) -> str | None:
    """The type of the mount of `device`; several mounts of one device (bind mounts) share its type."""
    if device is None:
        return None
    try:
        types = _MOUNT_TABLE.types()
    except OSError:
        return None
    return types.get(f"{os.major(device)}:{os.minor(device)}")


class _MountTable:
    """The mount table's types by device, read again only when a mount or unmount changed it: the kernel marks
    an open `/proc/self/mountinfo` with a priority event then (proc(5)), so a check costs one `poll(2)`, and
    `status` over a thousand runs reads the table once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._owner = 0  # the pid that opened the file: a forked child opens its own
        self._types: dict[str, str] = {}

    def types(self) -> dict[str, str]:
        with self._lock:
            if self._file is None or self._owner != os.getpid() or self._changed():
                self._types = self._read()
            return self._types

    def _changed(self) -> bool:
        poller = select.poll()
        poller.register(self._file, select.POLLPRI)
        return bool(poller.poll(0))

    def _read(self) -> dict[str, str]:
        if self._file is None or self._owner != os.getpid():
            self._file = open(MOUNTINFO, "rb")  # noqa: SIM115 -- kept open, to be polled
            self._owner = os.getpid()
            self._changed()  # a fresh file may carry an event already: what it reads next is current
        self._file.seek(0)
        types = {}
        for line in self._file.read().decode(errors="replace").splitlines():
            fields = line.split()
            if len(fields) > 4 and "-" in fields:
                types.setdefault(fields[2], fields[fields.index("-") + 1])
        return types


_MOUNT_TABLE = _MountTable()


def _type_from_statfs(path: Path) -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes.util  # only without a mount table: it costs `status` 20 ms to import

    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buffer = StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buffer)) != 0:
        return None
    return _MAGIC_TYPES.get(buffer.f_type & 0xFFFFFFFF)
