"""One push: every pending segment (with the assets that changed, and the compaction riding along) in one
commit, the journal told of the outcome, and the backoff before the next attempt after a failure. The
uploader's drain loop and ``hf-summary recover`` both push through a :class:`Pusher`."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

from hf_summary import compaction
from hf_summary._faults import fault
from hf_summary.assets import AssetTracker
from hf_summary.hub import (
    CommitResult,
    HubError,
    MissingRepoError,
    PathConflictError,
    PermanentHubError,
    PushTarget,
    client_for,
)
from hf_summary.journal import Journal, RunSettings, SegmentRow
from hf_summary.reconcile import repo_path

logger = logging.getLogger("hf_summary")

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 120.0
URGENT_BACKOFF_CAP_S = 1.0
PERMANENT_RETRY_S = 300.0


@dataclass(frozen=True)
class Pushed:
    """What one push carried."""

    segments: int
    bytes: int
    oid: str


class Pusher:
    """Pushes one journal's pending segments to its target, one commit per :meth:`push`. Keeps the backoff
    between failed attempts (:meth:`due`), the last permanent error, and the segments left out because their
    path on the Hub holds another run's file."""

    def __init__(self, journal: Journal, settings: RunSettings, client: PushTarget):
        self.journal = journal
        self.settings = settings
        self.client = client
        self.assets = AssetTracker(journal.logdir, settings)
        self.may_replace: set[str] = set()  # paths of our own committed files found damaged on the Hub
        self.permanent_error: str | None = None
        self.next_attempt = 0.0  # monotonic
        self._failures = 0
        self._conflicts = journal.conflicts()

    @classmethod
    def open(cls, journal: Journal, settings: RunSettings, token: str | None) -> Pusher:
        """A pusher to the target ``settings`` name, with ``token`` (``None``: the client's usual lookup)."""
        return cls(journal, settings, client_for(settings, token))

    def pushable(self) -> list[SegmentRow]:
        """The sealed segments to push now (those whose path on the Hub holds another run's file left out)."""
        return [row for row in self.journal.pending_segments() if row.id not in self._conflicts]

    def due(self) -> bool:
        """Whether the backoff after the last failure is over."""
        return time.monotonic() >= self.next_attempt

    def retry_now(self) -> None:
        """Forget the backoff: the next attempt may start at once."""
        self.next_attempt = 0.0

    def push(self, pending: list[SegmentRow], *, urgent: bool = False, final: bool = False) -> Pushed | None:
        """One commit carrying every segment of ``pending`` still on disk; what it carried, or ``None`` when the
        Hub did not take it (then the journal records the failure and the next attempt waits its backoff).

        ``urgent`` (a preempted drain): no compaction, no card tag or squash after it, a backoff of a second at
        most. ``final`` (a final drain): every asset is looked at, interrupted merges are finished and no new
        one is planned."""
        fault("after_claim")
        rows, files = self._on_disk(pending)
        if not rows:
            return None
        never_replace = frozenset(row.path_in_repo for row in rows) - self.may_replace
        pushed_assets = self.journal.get_value("assets", {})
        assets = self.assets.changed(pushed_assets, full=final)
        for relative in assets:
            run, _, name = relative.rpartition("/")
            files.append((self.journal.logdir / relative, repo_path(self.settings, run, name)))
        size = sum(row.size or 0 for row in rows)
        try:
            # -- compaction rides in this commit (hf_summary/compaction.py)
            ride = compaction.Ride() if urgent else compaction.prepare(
                self.journal, self.settings, self.client, {row.run for row in rows}, plan=not final
            )
            fault("during_upload")
            result = self._commit(
                files + ride.additions,
                f"hf-summary: {len(rows)} segment(s), {size} bytes"
                + (f", {len(ride.compaction_ids)} merge(s)" if ride.compaction_ids else ""),
                never_replace,
                ride.deletions,
            )
        except PathConflictError as exc:
            self._on_conflict([row for row in rows if row.path_in_repo in exc.paths], exc)
            return None
        except HubError as exc:
            self._on_failure(rows, exc, urgent=urgent)
            return None
        fault("after_commit")
        if ride.compaction_ids:
            fault("after_compaction_commit")
        self.journal.mark_committed([row.id for row in rows], result.oid, result.url, ride.compaction_ids)
        compaction.apply(self.journal)  # -- end of compaction
        if assets:
            self.journal.set_value("assets", {**pushed_assets, **assets})
        logger.info("pushed %d segment(s), %d bytes, in commit %s", len(rows), size, result.oid)
        self._failures = 0
        self.permanent_error = None
        self.next_attempt = 0.0
        if not urgent:  # the card tag and the squash wait for a later, unhurried push
            self._after_commit()
        return Pushed(len(rows), size, result.oid)

    def _on_disk(self, pending: list[SegmentRow]) -> tuple[list[SegmentRow], list[tuple[Path, str]]]:
        """The segments of ``pending`` whose file is there, with their files; the others are recorded as lost."""
        rows, files = [], []
        for row in pending:
            path = row.local_path(self.journal.logdir)
            if path.is_file() and not path.is_symlink():
                rows.append(row)
                files.append((path, row.path_in_repo))
            else:
                self.journal.record_failure([row.id], f"{path} is missing from disk", permanent=True)
                self.journal.drop_segment(row.id)
                logger.error("segment %s vanished from disk before it was pushed", path)
        return rows, files

    def _commit(
        self, files: list[tuple[Path, str]], message: str, never_replace: frozenset[str], deletions: list[str]
    ) -> CommitResult:
        """Commit; create the repo (or branch) only when the Hub says it is missing: the writer made it at
        start-up, and a push under preemption has no request to spare."""
        try:
            return self.client.commit_files(files, message, never_replace=never_replace, deletions=deletions)
        except MissingRepoError:
            self.client.ensure_repo(private=self.settings.private)
            return self.client.commit_files(files, message, never_replace=never_replace, deletions=deletions)

    def _after_commit(self) -> None:
        if self.settings.squash_history:
            fault("during_squash")
            try:
                if self.client.squash(f"Squash {self.settings.path_in_repo} history (hf-summary)"):
                    self.journal.record_event("squash", "history squashed")
            except HubError as exc:
                logger.warning("could not squash the history (will try after the next commit): %s", exc)
        if not self.journal.get_value("card_tagged", False):
            try:
                self.client.tag_card()
                self.journal.set_value("card_tagged", True)
            except HubError as exc:
                logger.warning("could not tag the repo card (will try after the next commit): %s", exc)

    def _on_conflict(self, rows: list[SegmentRow], exc: PathConflictError) -> None:
        """Segments whose path on the Hub holds another run's file: never pushed (the Hub's file stays), kept
        on disk and in the journal, and left out of later pushes so the rest of the run goes on."""
        self.journal.record_failure([row.id for row in rows], str(exc), permanent=True)
        self._conflicts.update(row.id for row in rows)
        self.journal.add_conflicts([row.id for row in rows])
        logger.error("not pushing %d segment(s) of %s: %s", len(rows), self.journal.logdir, exc)
        self.next_attempt = 0.0  # push the others now

    def _on_failure(self, rows: list[SegmentRow], exc: HubError, *, urgent: bool) -> None:
        message = str(exc)
        permanent = isinstance(exc, PermanentHubError)
        self.journal.record_failure([row.id for row in rows], message, permanent=permanent)
        self._failures += 1
        if permanent:
            if message != self.permanent_error:
                logger.error(
                    "push to %s %r failed and retrying will not help until this is fixed: %s",
                    self.settings.repo_type, self.settings.repo_id, message,
                )
            self.permanent_error = message
            delay = PERMANENT_RETRY_S
        else:
            retry_after = getattr(exc, "retry_after", None)
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (self._failures - 1))
            delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.0)
            logger.warning("push failed (attempt %d), retrying in %.1f s: %s", self._failures, delay, message)
        if urgent:  # no time to wait for a better moment
            delay = min(delay, URGENT_BACKOFF_CAP_S)
        self.next_attempt = time.monotonic() + delay
