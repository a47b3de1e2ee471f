"""hf_summary.filesystems tells a filesystem other hosts may see (network, FUSE) from a local one, by the mount
table or statfs(2), with HF_SUMMARY_SHARED_FS deciding over both."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from twohosts import SKIP_REASON, two_hosts

from hf_summary import filesystems
from hf_summary.filesystems import SHARED_FS_ENV, filesystem_of, is_shared_type
from hf_summary.journal import Journal


@pytest.mark.parametrize("fs_type", ["nfs", "nfs4", "lustre", "gpfs", "wekafs", "ceph", "beegfs", "fuse",
                                     "fuse.sshfs", "fuseblk", "cifs"])
def test_network_and_fuse_types_are_shared(fs_type):
    assert is_shared_type(fs_type)


@pytest.mark.parametrize("fs_type", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs"])
def test_local_types_are_not(fs_type):
    assert not is_shared_type(fs_type)


@pytest.mark.skipif(SKIP_REASON is not None, reason=f"FUSE and tmpfs mounts: {SKIP_REASON}")
def test_a_fuse_mount_is_shared_a_tmpfs_is_not_and_the_environment_decides_over_both(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_FS_ENV, raising=False)
    local = tmp_path / "tmpfs"
    local.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(local)], check=True)
    try:
        with two_hosts(tmp_path, "local") as hosts:
            shared = filesystem_of(hosts.one.path("not/yet/made"))  # judged by its nearest existing parent
            assert (shared.type, shared.shared) == ("fuse", True), shared
            assert filesystems._type_from_statfs(hosts.one.mount) == "fuse"  # the fallback agrees
            assert (filesystem_of(local).type, filesystem_of(local).shared) == ("tmpfs", False)
            monkeypatch.setenv(SHARED_FS_ENV, "0")
            assert not filesystem_of(hosts.one.mount).shared
            monkeypatch.setenv(SHARED_FS_ENV, "1")
            forced = filesystem_of(local)
            assert forced.shared and forced.type == "tmpfs" and SHARED_FS_ENV in forced.why
    finally:
        subprocess.run(["umount", str(local)], check=True)


def _journal_mode(logdir) -> str:
    with Journal(logdir, create=False) as journal:
        return journal.db.execute("PRAGMA journal_mode").fetchone()[0]


@pytest.mark.skipif(SKIP_REASON is not None, reason=f"FUSE mounts: {SKIP_REASON}")
def test_a_journal_on_a_shared_filesystem_has_a_rollback_journal_and_one_on_a_local_disk_wal(tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_FS_ENV, raising=False)
    Journal(tmp_path / "local").close()
    assert _journal_mode(tmp_path / "local") == "wal"
    with two_hosts(tmp_path, "forwarded") as hosts:
        Journal(hosts.one.path("run")).close()
        assert _journal_mode(hosts.two.path("run")) == "delete"
        assert not (hosts.backing / "run" / ".hf_summary" / "journal.db-shm").exists()
        shutil.copytree(tmp_path / "local", hosts.one.path("moved"))  # a WAL journal made elsewhere
        assert _journal_mode(hosts.one.path("moved")) == "delete"  # its only connection: switched
        monkeypatch.setenv(SHARED_FS_ENV, "0")  # the user knows better: WAL
        Journal(hosts.one.path("forced")).close()
        assert _journal_mode(hosts.one.path("forced")) == "wal"
    monkeypatch.setenv(SHARED_FS_ENV, "1")
    Journal(tmp_path / "declared").close()
    assert _journal_mode(tmp_path / "declared") == "delete"
