"""`hf-summary status`: where a run stands, from its journal alone (never the Hub).

Kept apart from `recover` so that the command imports only the journal and the process checks (sqlite3 and
psutil), not huggingface_hub: `hf-summary status` answers in a fraction of a second on a month-long run. On a
shared filesystem it reads the journal as it was at one instant (`hf_summary.snapshot.read_journal`): the
writer's host may be writing it, and locks may not reach across hosts.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hf_summary.backlog import DISK_EPISODE_KEY
from hf_summary.filesystems import filesystem_of
from hf_summary.journal import Journal, JournalError, LeaseOwner, RunSettings, journal_path
from hf_summary.liveness import HeartbeatWatch, WriterRecord, lease_owner_alive, writer_records
from hf_summary.snapshot import SnapshotError, read_journal


class StatusError(Exception):
    """The run's journal is missing or unusable; the message says what to do."""


def run_status(logdir: Path) -> dict:
    """Where a run stands: pending work, last commit and error, the uploader, its latest writer and the run's
    state, the settings. Reads only the journal (never the Hub) and changes nothing.

    `state`: `offline` (its latest writer runs or ran offline: `hf-summary sync` pushes it), `live` (a
    writer or uploader is alive and pushes it), `preempted` (its latest writer ended without close() or
    interpreter exit: a signal, a kill, a lost node; or a stop signal was recorded since it started), `closed`
    (closed cleanly) or `idle` (no writer recorded, no uploader alive). `preempted` is also a flag of its own,
    for offline runs. `disk`: the latest episode of events held in memory because the logdir's filesystem refused
    them (`since`, `ended` or None while it lasts, `held`, `written`, `dropped`, `lost`), or None."""
    try:
        status, settings, lease, writers = read_journal(logdir, _read, shared=filesystem_of(logdir).shared)
    except SnapshotError as exc:
        raise StatusError(f"{exc}; try again in a moment") from exc
    except FileNotFoundError as exc:
        if not journal_path(logdir).exists():
            raise StatusError(f"{logdir} has no hf-summary journal ({journal_path(logdir)} is missing)") from exc
        # an empty file: a writer is creating it (or died doing so)
        raise StatusError(f"the journal of {logdir} is not initialised ({exc.strerror}): a writer starting? Look "
                          "again in a moment") from exc
    except JournalError as exc:
        raise StatusError(
            f"the journal of {logdir} is unusable ({exc}); `hf-summary recover {logdir}` moves it aside and "
            "rebuilds it from the segments on disk"
        ) from exc
    alive = lease is not None and lease_owner_alive(lease[0])
    writer = writers[-1] if writers else None
    writer_alive = writer is not None and HeartbeatWatch(logdir, keep=False).alive(writer)
    preempted = not writer_alive and _preempted(writer, status["preemption"])
    status.update(
        state=_run_state(writer, writer_alive, alive, preempted),
        offline=writer is not None and writer.offline,
        preempted=preempted,
        writer_alive=writer_alive,
        writer_pid=writer.pid if writer else None,
        writer_host=writer.host if writer else None,
        uploader_alive=alive,
        uploader_pid=lease[0].pid if alive else None,
        uploader_heartbeat_age_s=(max(0.0, time.time() - lease[1])) if alive else None,
        repo_id=settings.repo_id if settings else None,
        repo_type=settings.repo_type if settings else None,
        revision=settings.revision if settings else None,
        path_in_repo=settings.path_in_repo if settings else None,
        endpoint=public_url(settings.endpoint) if settings else None,
    )
    return status


def _read(journal: Journal) -> tuple[dict, RunSettings | None, tuple[LeaseOwner, float] | None, list[WriterRecord]]:
    """What `run_status` needs of the journal, read in one go."""
    status = journal.status()
    latest = journal.latest_history(("budget", "settled", "overflow"))
    status.update(budget=_budget(latest.get("budget")), parked=parked_pushes(journal, latest),
                  disk=journal.get_value(DISK_EPISODE_KEY))
    return status, journal.load_settings(), journal.lease_owner(), writer_records(journal)


def _budget(latest: dict | None) -> dict | None:
    """When the repo's commit budget was last the bottleneck (the Hub refused a commit with 429 and the uploader
    spaced its commits), and by how much it spaces them, from the latest `budget` history entry; `None` when it
    is not (any more)."""
    if not latest or not latest.get("gap_s"):
        return None
    return {"since": latest["at"], "gap_s": latest["gap_s"], "retry_after": latest.get("retry_after")}


def parked_pushes(journal: Journal, latest: dict[str, dict] | None = None) -> dict | None:
    """The pushes of this run parked in the overflow bucket since the last settle (from the journal's history):
    where, since when, how many segments; `None` when there are none. `latest`: the journal's
    `latest_history` of `settled` and `overflow`, when already read."""
    if latest is None:
        latest = journal.latest_history(("settled", "overflow"))
    after = latest["settled"]["id"] if "settled" in latest else 0
    if "overflow" not in latest or latest["overflow"]["id"] < after:
        return None
    parked = [event for event in journal.history("overflow", limit=1000) if event["id"] > after]
    return {
        "bucket": parked[0]["bucket"],
        "records": [event["record"] for event in reversed(parked)],
        "segments": sum(event["segments"] for event in parked),
        "bytes": sum(event["bytes"] for event in parked),
        "since": parked[-1]["at"],
    }


def _preempted(writer: WriterRecord | None, preemption: dict | None) -> bool:
    """Whether the latest writer (not alive) ended without closing, or a stop signal came after it started."""
    if writer is not None and writer.closed_at is None:
        return True
    return preemption is not None and (writer is None or preemption["at"] >= writer.started_at)


def _run_state(writer: WriterRecord | None, writer_alive: bool, uploader_alive: bool, preempted: bool) -> str:
    if writer is not None and writer.offline:
        return "offline"
    if writer_alive or uploader_alive:
        return "live"
    if preempted:
        return "preempted"
    return "idle" if writer is None else "closed"


def public_url(url: str | None) -> str | None:
    """`url` without any `user:password@` part."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
