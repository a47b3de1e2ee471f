"""A fault-injecting FUSE passthrough for tests: ``python faultfs.py ROOT MOUNTPOINT RULES`` mounts ROOT at
MOUNTPOINT (in the foreground, until unmounted) and makes chosen calls on chosen paths fail, or wait, on command.

RULES is a JSON file outside the mount, re-read whenever it changes: a list of
``{"ops": ["write", "create", ...], "glob": "*tfevents*", "errno": 5, "delay_s": 0}``. A call of one of ``ops``
on a path (relative to the mount, starting with ``/``) that matches ``glob`` waits ``delay_s`` and then fails with
``errno`` (0: it goes through). Built on mfusepy (a maintained fusepy, libfuse 2 or 3)."""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import sys
import threading
import time

import mfusepy as fuse


class FaultFS(fuse.Operations):
    use_ns = True

    def __init__(self, root: str, rules_path: str):
        self.root = os.path.realpath(root)
        self.rules_path = rules_path
        self._rules: list[dict] = []
        self._rules_stamp: int | None = None
        self._lock = threading.Lock()

    # -- faults ----------------------------------------------------------------------------------------------

    def _check(self, op: str, path: str) -> None:
        try:
            stamp = os.stat(self.rules_path).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._rules_stamp:
                self._rules_stamp = stamp
                try:
                    with open(self.rules_path) as f:
                        self._rules = json.load(f)
                except (OSError, ValueError):
                    self._rules = []
            rules = list(self._rules)
        for rule in rules:
            if op in rule["ops"] and fnmatch.fnmatch(path, rule.get("glob", "*")):
                if rule.get("delay_s"):
                    time.sleep(rule["delay_s"])
                if rule.get("errno"):
                    raise fuse.FuseOSError(rule["errno"])
                return

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    # -- the passthrough -------------------------------------------------------------------------------------

    def access(self, path, amode):
        if not os.access(self._full(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path, mode):
        return os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._full(path), uid, gid)

    def getattr(self, path, fh=None):
        self._check("getattr", path)
        st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
        keys = ("st_atime_ns", "st_ctime_ns", "st_gid", "st_mode", "st_mtime_ns", "st_nlink", "st_size", "st_uid")
        attrs = {key: getattr(st, key) for key in keys}
        for short in ("st_atime", "st_ctime", "st_mtime"):
            attrs[short] = attrs.pop(f"{short}_ns")
        return attrs

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._full(path))]

    def readlink(self, path):
        return os.readlink(self._full(path))

    def mkdir(self, path, mode):
        self._check("mkdir", path)
        return os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._full(path))

    def unlink(self, path):
        self._check("unlink", path)
        return os.unlink(self._full(path))

    def symlink(self, target, source):
        return os.symlink(source, self._full(target))

    def link(self, target, source):
        return os.link(self._full(source), self._full(target))

    def rename(self, old, new):
        self._check("rename", new)
        return os.rename(self._full(old), self._full(new))

    def utimens(self, path, times=None):
        return os.utime(self._full(path), ns=times) if times else os.utime(self._full(path))

    def statfs(self, path):
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                "f_frsize", "f_namemax")
        return {key: getattr(st, key) for key in keys}

    def open(self, path, flags):
        self._check("open", path)
        return os.open(self._full(path), flags)

    def create(self, path, mode, fi=None):
        self._check("create", path)
        return os.open(self._full(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        self._check("read", path)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._check("write", path)
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._check("truncate", path)
        if fh is not None:
            return os.ftruncate(fh, length)
        return os.truncate(self._full(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    def fsync(self, path, datasync, fh):
        self._check("fsync", path)
        return os.fdatasync(fh) if datasync else os.fsync(fh)


def main() -> None:
    root, mountpoint, rules = sys.argv[1:4]
    fuse.FUSE(FaultFS(root, rules), mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
