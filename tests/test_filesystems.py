"""hf_summary.filesystems tells a filesystem other hosts may see (network, FUSE) from a local one, by the mount
table or statfs(2), with HF_SUMMARY_SHARED_FS deciding over both."""

from __future__ import annotations

import subprocess

import pytest
from twohosts import SKIP_REASON, two_hosts

from hf_summary import filesystems
from hf_summary.filesystems import SHARED_FS_ENV, filesystem_of, is_shared_type


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
