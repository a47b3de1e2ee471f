"""`hf-summary status`: where a run stands, from its journal alone (never the Hub).

Kept apart from `recover` so that the command imports only the journal and the process checks (sqlite3 and
psutil), not huggingface_hub: `hf-summary status` answers in a fraction of a second on a month-long run. On a
shared filesystem it reads a consistent copy of the journal (`hf_summary.snapshot`): the writer's host may
be writing it, and locks may not reach across hosts.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hf_summary.backlog import DISK_EPISODE_KEY
from hf_summary.filesystems import filesystem_of
from hf_summary.journal import Journal, JournalError, journal_path
from hf_summary.liveness import HeartbeatWatch, WriterRecord, lease_owner_alive, writer_records
from hf_summary.snapshot import SnapshotError, journal_snapshot


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
    if not journal_path(logdir).exists():
        raise StatusError(f"{logdir} has no hf-summary journal ({journal_path(logdir)} is missing)")
    try:
        with journal_snapshot(logdir) if filesystem_of(logdir).shared else Journal(logdir, create=False) as journal:
            status = journal.status()
            status.update(budget=_budget(journal), parked=parked_pushes(journal))
            settings = journal.load_settings()
            lease = journal.lease_owner()
            writers = writer_records(journal)
            disk = journal.get_value(DISK_EPISODE_KEY)
    except SnapshotError as exc:
        raise StatusError(f"{exc}; try again in a moment") from exc
    except FileNotFoundError as exc:  # an empty file: a writer is creating it (or died doing so)
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
        disk=disk,
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


def _budget(journal: Journal) -> dict | None:
    """When the repo's commit budget was last the bottleneck (the Hub refused a commit with 429 and the uploader
    spaced its commits), and by how much it spaces them; `None` when it is not (any more)."""
    latest = journal.history("budget", limit=1)
    if not latest or not latest[0].get("gap_s"):
        return None
    return {"since": latest[0]["at"], "gap_s": latest[0]["gap_s"], "retry_after": latest[0].get("retry_after")}


def parked_pushes(journal: Journal) -> dict | None:
    """The pushes of this run parked in the overflow bucket since the last settle (from the journal's history):
    where, since when, how many segments; `None` when there are none."""
    settled = journal.history("settled", limit=1)
    after = settled[0]["id"] if settled else 0
    parked = [event for event in journal.history("overflow", limit=1000) if event["id"] > after]
    if not parked:
        return None
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
