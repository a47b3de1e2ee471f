"""Settle: move the pushes parked in the overflow bucket (see `hf_summary.overflow`) into their repo, in
one commit, then remove them from the bucket.

Exactly once: a parked file's path in the repo is unique to its run and segment, and the repo client skips a
file the repo already holds with the same content, so a file committed by an earlier settle, or pushed from a
surviving logdir meanwhile, is never committed twice; one that holds *other* content there is never
overwritten. Bucket files are removed only after the commit that holds them was confirmed (or the repo was
seen to hold them already); a settle that dies between the two leaves them to the next one, which finds them
in the repo and only removes them. Records are settled oldest first, and files in each record's order.

Run by `hf-summary settle REPO` (every run folder of the repo's branch), by `recover`/`sync` and by an
uploader as it starts (its own run folder only).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary.hub import HubError, MissingRepoError, PathConflictError, RemoteFile
from hf_summary.overflow import OverflowRecord, OverflowRecordError, is_record, target_prefix
from hf_summary.segments import file_sha256


@dataclass
class SettleReport:
    bucket: str
    records: int = 0  # records found
    settled_records: int = 0  # records whose every file is in the repo now, removed from the bucket
    committed_files: int = 0
    committed_bytes: int = 0
    already_in_repo: int = 0
    commit: str | None = None
    missing: list[str] = field(default_factory=list)  # parked files neither in the bucket (intact) nor in the repo
    conflicts: list[str] = field(default_factory=list)  # paths where the repo holds other content
    unreadable: list[str] = field(default_factory=list)  # records that could not be read

    @property
    def complete(self) -> bool:
        return self.settled_records == self.records and not self.unreadable


def settle(
    repo, bucket, *, folder: str | None = None, say: Callable[[str], None] = lambda _: None
) -> SettleReport:
    """Move every parked file of `repo`'s branch (of its run folder `folder` only, if given) from `bucket`
    into the repo. `repo` and `bucket` are `PushTarget` clients. Raises
    `RateLimitedError` when the repo still refuses commits for its budget (nothing is
    removed then), and `HubError` for other failures of the Hub."""
    report = SettleReport(bucket=bucket.repo_id)
    prefix = target_prefix(repo.repo_id, repo.repo_type, repo.revision) + (f"/{folder}" if folder else "")
    listing = bucket.list_files(prefix)
    if not any(is_record(path) for path in listing):
        return report
    with tempfile.TemporaryDirectory(prefix="hf-summary-settle-") as scratch:
        cache = Path(scratch)
        records = _read_records(bucket, listing, cache, report)
        report.records = len(records) + len(report.unreadable)
        say(f"found {len(records)} parked push(es) in bucket {bucket.repo_id}")
        wanted = [file.path_in_repo for record in records for file in record.files]
        held = repo.file_info(wanted) if wanted else {}
        to_commit: list[tuple[Path, str]] = []
        for record in records:
            for file in sorted(record.files, key=lambda f: f.order):
                if _holds(held.get(file.path_in_repo), file.size, file.sha256):
                    report.already_in_repo += 1
                    continue
                local = _fetch_intact(bucket, listing.get(record.bucket_path(file)), file.sha256, cache)
                if local is None:
                    report.missing.append(file.path_in_repo)
                else:
                    to_commit.append((local, file.path_in_repo))
        _commit(repo, to_commit, bucket.repo_id, report, say)
        _remove_settled(bucket, records, listing, report)
    return report


def _read_records(bucket, listing: dict[str, RemoteFile], cache: Path, report: SettleReport) -> list[OverflowRecord]:
    records = []
    for path in sorted(p for p in listing if is_record(p)):
        local = bucket.fetch_file(listing[path], commit=None, cache_dir=cache)
        try:
            record = OverflowRecord.from_json(local.read_text(encoding="utf-8"), path)
        except (OverflowRecordError, UnicodeDecodeError) as exc:
            report.unreadable.append(f"{path}: {exc}")
            continue
        if record.path != path:
            report.unreadable.append(f"{path}: the record names another place ({record.path})")
            continue
        records.append(record)
    return sorted(records, key=lambda record: record.record_id)


def _holds(remote: RemoteFile | None, size: int, sha256: str) -> bool:
    return remote is not None and remote.holds(size, sha256, None) is True


def _fetch_intact(bucket, entry: RemoteFile | None, sha256: str, cache: Path) -> Path | None:
    """The parked file's bytes, downloaded, or `None` when the bucket lacks it or holds other bytes."""
    if entry is None:
        return None
    local = bucket.fetch_file(entry, commit=None, cache_dir=cache)
    return local if file_sha256(local) == sha256 else None


def _commit(repo, files: list[tuple[Path, str]], bucket_id: str, report: SettleReport, say) -> None:
    """One commit of `files`; paths whose repo copy holds other content are left out (and reported)."""
    while files:
        message = f"hf-summary settle: {len(files)} parked file(s) from bucket {bucket_id}"
        never_replace = frozenset(dest for _, dest in files)
        try:
            try:
                result = repo.commit_files(files, message, never_replace=never_replace)
            except MissingRepoError:
                repo.ensure_repo(private=None)
                result = repo.commit_files(files, message, never_replace=never_replace)
        except PathConflictError as exc:
            report.conflicts += exc.paths
            files = [(src, dest) for src, dest in files if dest not in exc.paths]
            continue
        report.commit = result.oid
        report.committed_files = len(files)
        report.committed_bytes = sum(src.stat().st_size for src, _ in files)
        say(f"committed {len(files)} parked file(s) to {repo.repo_id} in {result.oid}")
        return


def _remove_settled(bucket, records: list[OverflowRecord], listing: dict[str, RemoteFile], report: SettleReport) -> None:
    """Remove from the bucket every record whose files are all in the repo now, with its files."""
    unsettled = set(report.missing) | set(report.conflicts)
    doomed = []
    for record in records:
        if any(file.path_in_repo in unsettled for file in record.files):
            continue
        report.settled_records += 1
        doomed += [path for file in record.files if (path := record.bucket_path(file)) in listing]
        doomed.append(record.path)
    if doomed:
        try:
            bucket.commit_files([], f"hf-summary settled {report.settled_records} record(s)", deletions=doomed)
        except HubError:
            report.settled_records = 0  # in the repo, still in the bucket: the next settle only removes them
            raise
