"""A run whose writer lives on another host (the logdir on a shared filesystem): read it and push what it sealed
without ever writing where that host writes.

While a writer of another host lives, its host is the only one that writes the run's journal and event files.
From here, `sync`/`recover`/`status`:

- read the journal from a `journal_snapshot` (a private, consistent copy), so no lock
  of the shared file is needed and no half-written page is ever read;
- push a sealed segment only once this host reads it whole: exactly the size and sha256 its writer recorded
  (another host's page cache may not have caught up yet; that segment waits for the next sync);
- skip what the Hub already holds (one listing of the run's folder), and record nothing in the journal: it learns
  of the pushes once the writer has gone, when a plain `recover` takes the run over and verifies it. The only
  file written in the logdir is this host's own view of the writers' heartbeats
  (`HeartbeatWatch`), which the writer's host never writes.

Open segments, files the journal does not know yet and the lease are left alone: they are the writer's.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary.hub import MissingRepoError, PushTarget, commit_or_create
from hf_summary.journal import Journal, RunSettings
from hf_summary.liveness import HeartbeatWatch, WriterRecord, writer_records
from hf_summary.segments import file_digests


def foreign_live_writers(snapshot: Journal, logdir: Path, *, others_gone: bool = False) -> list[WriterRecord]:
    """The writers of other hosts that are alive by `hf_summary.liveness`'s rule (none when
    `others_gone`: their machines are known to be gone). Looking keeps this host's view of their heartbeat
    counters in `logdir`."""
    if others_gone:
        return []
    here = socket.gethostname()
    foreign = [record for record in writer_records(snapshot) if record.host != here]
    if not foreign:
        return []
    watch = HeartbeatWatch(logdir)
    return [record for record in foreign if watch.alive(record)]


@dataclass
class ForeignPush:
    """What one push of a foreign writer's sealed segments did."""

    files: list[tuple[Path, str]] = field(default_factory=list)  # (local path, path in repo) pushed
    bytes: int = 0
    on_hub: int = 0  # sealed segments the Hub already held
    unseen: int = 0  # sealed segments not yet read whole from here (another host's cache lags)
    open: int = 0  # the writer's open segments, left to it
    commit: str | None = None


def plan_foreign_push(snapshot: Journal, logdir: Path, settings: RunSettings, client: PushTarget) -> ForeignPush:
    """Which sealed segments to push: not on the Hub (one listing of the run's folder) and read whole from here.
    Raises the client's `HubError` when the listing fails."""
    try:
        remote = client.list_files(settings.path_in_repo) if snapshot.segments("sealed") else {}
    except MissingRepoError:  # an offline writer never created it
        remote = {}
    plan = ForeignPush(open=len(snapshot.open_segments()))
    for row in snapshot.segments("sealed"):
        found = remote.get(row.path_in_repo)
        if found is not None and found.holds(row.size, row.sha256, None):
            plan.on_hub += 1
            continue
        path = row.local_path(logdir)
        try:
            size, sha256, _ = file_digests(path)
        except OSError:
            size, sha256 = None, None
        if (size, sha256) != (row.size, row.sha256):
            plan.unseen += 1
            continue
        plan.files.append((path, row.path_in_repo))
        plan.bytes += size
    return plan


def push_foreign(plan: ForeignPush, settings: RunSettings, client: PushTarget) -> None:
    """Push the files of `plan` (from `plan_foreign_push`) in one commit, noted in `plan.commit`;
    raises the client's `HubError` when the Hub refuses."""
    if not plan.files:
        return
    message = f"hf-summary: {len(plan.files)} segment(s), {plan.bytes} bytes (synced from {socket.gethostname()})"
    never_replace = frozenset(dest for _, dest in plan.files)
    plan.commit = commit_or_create(client, plan.files, message, private=settings.private,
                                   never_replace=never_replace).oid
