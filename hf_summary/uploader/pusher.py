"""One push: every pending segment (with the assets that changed, and the compaction riding along) in one
commit, the journal told of the outcome, and the backoff before the next attempt after a failure. The
uploader's drain loop and `hf-summary recover` both push through a `Pusher`.

The repo's commit budget (HTTP 429 on a commit): an unhurried push spaces the next ones
(`pacing`); an urgent one (preempted) that the Hub will not take within the grace
period is parked in the overflow bucket (`hf_summary.overflow`). Before its first unhurried push a pusher
moves its run folder's parked pushes into the repo (`hf_summary.settle`). With a
`HostShare`, a push also carries the sealed segments of the host's other
uploaders to the same target."""

from __future__ import annotations

import logging
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_summary import compaction
from hf_summary._faults import fault
from hf_summary.assets import AssetTracker
from hf_summary.hub import (
    BUCKET,
    CommitResult,
    HubError,
    PathConflictError,
    PermanentHubError,
    PushTarget,
    RateLimitedError,
    client_for,
    commit_or_create,
    open_client,
)
from hf_summary.journal import Journal, RunSettings, SegmentRow
from hf_summary.overflow import new_record, overflow_bucket, park
from hf_summary.reconcile import repo_path
from hf_summary.settle import settle
from hf_summary.status import parked_pushes
from hf_summary.uploader.hostshare import HostShare, member_journals
from hf_summary.uploader.pacing import CommitPacer

logger = logging.getLogger("hf_summary")

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 120.0
URGENT_BACKOFF_CAP_S = 1.0
PERMANENT_RETRY_S = 300.0
PARK_TIME_S = 3.0  # what parking a push in the overflow bucket needs of the grace period
SHARE_LOCK_WAIT_S = 5.0  # another member's push holds the target's lock about this long at most, usually


@dataclass(frozen=True)
class Pushed:
    """What one push carried."""

    segments: int
    bytes: int
    oid: str


class Pusher:
    """Pushes one journal's pending segments to its target, one commit per `push`. Keeps the backoff
    between failed attempts (`due`), the last permanent error, and the segments left out because their
    path on the Hub holds another run's file."""

    def __init__(self, journal: Journal, settings: RunSettings, client: PushTarget, token: str | None = None):
        self.journal = journal
        self.settings = settings
        self.client = client
        self.token = token
        self.pacer = CommitPacer(settings.commit_every_s)
        self.share: HostShare | None = None  # set (and joined) by the uploader child that shares pushes
        self.parked_segments = 0
        self._parked: set[int] = set()  # segment ids parked in the overflow bucket by this pusher
        self._to_park: tuple[list[SegmentRow], HubError] | None = None
        self._settle_due = settings.repo_type != BUCKET  # parked pushes of this run folder: moved in first
        self.assets = AssetTracker(journal.logdir, settings)
        self.may_replace: set[str] = set()  # paths of our own committed files found damaged on the Hub
        self.permanent_error: str | None = None
        self.next_attempt = 0.0  # monotonic
        self._failures = 0
        self._conflicts = journal.conflicts()

    @classmethod
    def open(cls, journal: Journal, settings: RunSettings, token: str | None) -> Pusher:
        """A pusher to the target `settings` name, with `token` (`None`: the client's usual lookup)."""
        return cls(journal, settings, client_for(settings, token), token)

    def pushable(self) -> list[SegmentRow]:
        """The sealed segments to push now (those whose path on the Hub holds another run's file left out)."""
        return [row for row in self.journal.pending_segments()
                if row.id not in self._conflicts and row.id not in self._parked]

    def due(self) -> bool:
        """Whether the backoff after the last failure is over."""
        return time.monotonic() >= self.next_attempt

    def retry_now(self) -> None:
        """Forget the backoff: the next attempt may start at once."""
        self.next_attempt = 0.0

    def push(
        self, pending: list[SegmentRow], *, urgent: bool = False, final: bool = False, deadline: float | None = None
    ) -> Pushed | None:
        """One commit carrying every segment of `pending` still on disk (and, when sharing, the host's other
        uploaders' sealed segments for the target); what it carried, or `None` when the Hub did not take it
        (then the journal records the failure and the next attempt waits its backoff).

        `urgent` (a preempted drain, to end by `deadline`, monotonic): no compaction, no card tag or squash
        after it, a backoff of a second at most, and a push refused for the commit budget is parked. `final`
        (a final drain): every asset is looked at, interrupted merges are finished and no new one is planned."""
        pushed = self._push_shared(urgent, final, deadline) if self.share is not None else self._push(
            pending, [], urgent=urgent, final=final, deadline=deadline)
        if self._to_park is not None:  # after the host's lock is released: the others park theirs meanwhile
            rows, exc = self._to_park
            self._to_park = None
            if not self.park(rows, exc):
                self.next_attempt = time.monotonic() + URGENT_BACKOFF_CAP_S
        return pushed

    def _push_shared(self, urgent: bool, final: bool, deadline: float | None) -> Pushed | None:
        """One push holding this host's lock for the target, carrying the other members' sealed segments too."""
        with self.share.pushing(timeout=SHARE_LOCK_WAIT_S) as held:
            if not held:
                return None
            members = self.share.members()
            age = self.share.last_commit_age()
            if members and not (urgent or final) and age < self.settings.commit_every_s:
                self.next_attempt = time.monotonic() + self.settings.commit_every_s - age  # one commit per tick
                return None
            with member_journals(members) as others:
                others = [(journal, rows) for journal, rows in others if rows]
                pushed = self._push(self.pushable(), others, urgent=urgent, final=final, deadline=deadline)
            if pushed is not None:
                self.share.note_commit()
            return pushed

    def push_assets(self, *, urgent: bool = False, final: bool = False, deadline: float | None = None) -> bool:
        """With no segment pending: one commit carrying the assets that changed since they were pushed (none when
        none did). Whether the Hub holds them as they are now; `False` when it did not take the commit (the
        next attempt then waits its backoff). Options as for `push`."""
        changes = self.changed_assets(full=final)
        if not changes[0]:
            return True
        if self._push([], [], urgent=urgent, final=final, deadline=deadline, changes=changes) is not None:
            return True
        self._to_park = None  # only segments are parked: the assets wait for the next push
        self.next_attempt = max(self.next_attempt, time.monotonic() + URGENT_BACKOFF_CAP_S)
        return False

    def _push(self, pending: list[SegmentRow], others: list[tuple[Journal, list[SegmentRow]]], *, urgent: bool,
              final: bool, deadline: float | None,
              changes: tuple[dict[str, Any], list[tuple[Path, str]]] | None = None) -> Pushed | None:
        """One commit; `changes`: the assets that changed, when the caller looked already."""
        fault("after_claim")
        rows, files = self._on_disk(pending)
        if not rows and not others and not (changes and changes[0]):
            return None
        if self._settle_due and not urgent and not self._settle_parked(rows):
            return None
        files += [(row.local_path(journal.logdir), row.path_in_repo) for journal, theirs in others for row in theirs]
        never_replace = frozenset(dest for _, dest in files) - self.may_replace
        assets, asset_files = changes if changes is not None else self.changed_assets(full=final)
        files += asset_files
        size = sum(row.size or 0 for row in rows)
        try:
            # -- compaction rides in this commit (hf_summary/compaction.py)
            ride = compaction.Ride() if urgent else compaction.prepare(
                self.journal, self.settings, self.client, {row.run for row in rows}, plan=not final
            )
            fault("during_upload")
            result = self._commit(files + ride.additions, _message(rows, size, ride, others, len(assets)),
                                  never_replace, ride.deletions)
        except PathConflictError as exc:
            self.set_aside([row for row in rows if row.path_in_repo in exc.paths], exc)
            return None
        except HubError as exc:
            for journal, theirs in others:
                journal.record_failure([row.id for row in theirs], str(exc), permanent=isinstance(exc, PermanentHubError))
            self._on_failure(rows, exc, urgent=urgent, final=final, deadline=deadline)
            return None
        fault("after_commit")
        if ride.compaction_ids:
            fault("after_compaction_commit")
        for journal, theirs in others:
            journal.mark_committed([row.id for row in theirs], result.oid, result.url)
        self.journal.mark_committed([row.id for row in rows], result.oid, result.url, ride.compaction_ids)
        compaction.apply(self.journal)  # -- end of compaction
        self.assets_pushed(assets)
        logger.info("pushed %d segment(s), %d bytes, in commit %s", len(rows), size, result.oid)
        self._failures = 0
        self.permanent_error = None
        self.next_attempt = time.monotonic() + self._paced(urgent or final)
        if not urgent:  # the card tag and the squash wait for a later, unhurried push
            self.after_commit()
        return Pushed(len(rows), size, result.oid)

    def changed_assets(self, *, full: bool) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
        """The assets changed since they were last pushed (every one looked at when `full`), and their
        `(local path, path in repo)`; once committed, `assets_pushed` records them."""
        assets = self.assets.changed(self.journal.get_value("assets", {}), full=full)
        files = []
        for relative in assets:
            run, _, name = relative.rpartition("/")
            files.append((self.journal.logdir / relative, repo_path(self.settings, run, name)))
        return assets, files

    def assets_pushed(self, assets: dict[str, Any]) -> None:
        if assets:
            self.journal.set_value("assets", {**self.journal.get_value("assets", {}), **assets})

    def settle_first(self) -> bool:
        """Before the first unhurried push: move this run folder's parked pushes into the repo (see
        `_settle_parked`); whether a push may go on."""
        return not self._settle_due or self._settle_parked(self.pushable())

    def _on_disk(self, pending: list[SegmentRow]) -> tuple[list[SegmentRow], list[tuple[Path, str]]]:
        """The segments of `pending` whose file is there, with their files; the others are recorded as lost."""
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
        return commit_or_create(self.client, files, message, private=self.settings.private,
                                never_replace=never_replace, deletions=deletions)

    def after_commit(self) -> None:
        """After an unhurried commit: squash the history if the run asks for it; tag the repo card once."""
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

    def set_aside(self, rows: list[SegmentRow], exc: PathConflictError) -> None:
        """Segments whose path on the Hub holds another run's file: never pushed (the Hub's file stays), kept
        on disk and in the journal, and left out of later pushes so the rest of the run goes on."""
        self.journal.record_failure([row.id for row in rows], str(exc), permanent=True)
        self._conflicts.update(row.id for row in rows)
        self.journal.add_conflicts([row.id for row in rows])
        logger.error("not pushing %d segment(s) of %s: %s", len(rows), self.journal.logdir, exc)
        self.next_attempt = 0.0  # push the others now

    def _on_failure(self, rows: list[SegmentRow], exc: HubError, *, urgent: bool, final: bool = False,
                    deadline: float | None = None) -> None:
        if isinstance(exc, RateLimitedError) and (urgent or not final):  # (a close() waited on retries as usual)
            self._on_budget_spent(rows, exc, urgent=urgent, deadline=deadline)
            return
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

    # ---------------------------------------------------------------- the commit budget

    def _paced(self, hurried: bool) -> float:
        """After an accepted commit: the wait before the next one (see `pacing`)."""
        was_bound = self.pacer.budget_bound
        gap = self.pacer.committed()
        if was_bound and not self.pacer.budget_bound:
            self.journal.record_event("budget", "the repo takes commits again: no more spacing", gap_s=0.0)
        return 0.0 if hurried else gap

    def _on_budget_spent(self, rows: list[SegmentRow], exc: RateLimitedError, *, urgent: bool,
                         deadline: float | None) -> None:
        """A commit refused for the repo's commit budget. Unhurried: space the commits (the segments wait and
        ride together in the next one). Urgent: wait for the Hub's hint if it falls before `deadline`, else
        park the push in the overflow bucket, where no commit is needed."""
        if rows:
            self.journal.record_failure([row.id for row in rows], str(exc), permanent=False)
        if urgent:
            left = (deadline - time.monotonic()) if deadline is not None else 0.0
            if exc.retry_after is not None and exc.retry_after + PARK_TIME_S < left:
                self.next_attempt = time.monotonic() + exc.retry_after
            else:
                self._to_park = (rows, exc)  # by push(), once the host's lock is released
            return
        refusal = self.pacer.refused(exc.retry_after)
        self.next_attempt = time.monotonic() + refusal.delay_s
        logger.warning("the repo's commit budget is spent (%s); next try in %.0f s, commits spaced by %.0f s",
                       exc, refusal.delay_s, refusal.gap_s)
        if refusal.first:
            self.journal.record_event(
                "budget", f"the Hub refused a commit for the repo's commit budget; commits spaced by "
                f"{refusal.gap_s:.0f} s", gap_s=refusal.gap_s, retry_after=exc.retry_after,
            )

    def _overflow_bucket(self) -> PushTarget:
        return open_client(repo_id=overflow_bucket(self.settings.repo_id), repo_type=BUCKET,
                           endpoint=self.settings.endpoint, token=self.token)

    def park(self, rows: list[SegmentRow], exc: HubError) -> bool:
        """Put `rows` in the overflow bucket with the record a later settle needs; returns whether the bucket
        took them. They stay pending in the journal (a surviving logdir pushes them as usual; settle then finds
        them in the repo and only removes the bucket's copies), but this pusher pushes them no more."""
        if not rows:
            return True
        bucket = self._overflow_bucket()
        logdir = self.journal.logdir
        record = new_record(
            repo_id=self.settings.repo_id, repo_type=self.settings.repo_type, revision=self.settings.revision,
            folder=self.settings.path_in_repo, run_id=self.journal.run_id(), host=socket.gethostname(),
            reason=str(exc),
            files=[(row.local_path(logdir), row.path_in_repo, row.size or 0, row.sha256 or "") for row in rows],
        )
        try:
            park(bucket, record, [row.local_path(logdir) for row in rows])
        except HubError as error:
            logger.error("could not park the push in bucket %s either: %s", bucket.repo_id, error)
            return False
        size = sum(row.size or 0 for row in rows)
        self._parked.update(row.id for row in rows)
        self.parked_segments += len(rows)
        self.journal.record_event(
            "overflow", f"{len(rows)} segment(s) parked in bucket {bucket.repo_id}: the repo's commit budget is spent",
            bucket=bucket.repo_id, record=record.path, segments=len(rows), bytes=size,
        )
        logger.warning(
            "the repo's commit budget is spent: parked %d segment(s), %d bytes, in bucket %s (%s); `hf-summary "
            "settle %s` moves them into the repo once the budget allows", len(rows), size, bucket.repo_id,
            record.path, self.settings.repo_id,
        )
        return True

    def _settle_parked(self, rows: list[SegmentRow]) -> bool:
        """Move this run folder's parked pushes (an earlier uploader's, on any machine) into the repo before
        pushing anything newer; returns whether the push may go on. When the bucket cannot be read, the push
        goes on unless this journal recorded parked pushes (those must land before a compaction could replace
        their files)."""
        bucket = self._overflow_bucket()
        try:
            report = settle(self.client, bucket, folder=self.settings.path_in_repo)
        except RateLimitedError as exc:
            self._on_budget_spent([], exc, urgent=False, deadline=None)
            return False
        except HubError as exc:
            if parked_pushes(self.journal) is None:
                return True
            self._on_failure(rows, exc, urgent=False)
            return False
        self._settle_due = False
        if report.records:
            self.journal.record_event(
                "settled", f"moved {report.settled_records} parked push(es) from bucket {bucket.repo_id} into "
                "the repo", bucket=bucket.repo_id, records=report.settled_records, commit=report.commit,
            )
            logger.info("moved %d parked push(es) from bucket %s into the repo", report.settled_records,
                        bucket.repo_id)
        return True


def _message(rows: list[SegmentRow], size: int, ride: compaction.Ride,
             others: list[tuple[Journal, list[SegmentRow]]], assets: int) -> str:
    return (
        f"hf-summary: {len(rows)} segment(s), {size} bytes"
        + (f", {assets} other file(s)" if assets else "")
        + (f", {len(ride.compaction_ids)} merge(s)" if ride.compaction_ids else "")
        + (f", and {sum(len(theirs) for _, theirs in others)} of {len(others)} other run(s) of this host"
           if others else "")
    )
