"""The uploader child: holds the journal's lease and pushes sealed segments, one commit per push.

Started by the writer as ``python -m hf_summary.uploader LOGDIR --parent-pid P --parent-create-time T`` in
its own session. The first line on stdin carries the token (JSON); later lines are wake-ups (``push``,
``close``); end of file, or the parent's death seen through psutil (pid and create time), starts the final
drain: seal what the trainer left open, push everything, exit within ``--drain-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import queue
import random
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

import psutil

from hf_summary.hub import HubClient, HubError, PermanentHubError, use_timeouts
from hf_summary.journal import Journal, JournalError, LeaseOwner, RunSettings, SegmentRow
from hf_summary.reconcile import JOURNAL_DIR, changed_assets, repo_path, seal_abandoned

logger = logging.getLogger("hf_summary")

POLL_INTERVAL_S = 0.5
HEARTBEAT_INTERVAL_S = 5.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 120.0
PERMANENT_RETRY_S = 300.0
JOURNAL_RETRY_S = 2.0
DEADLINE_GRACE_S = 2.0
_EOF = object()


def process_alive(pid: int, create_time: float | None = None) -> bool:
    """Whether ``pid`` runs, and is the same process (same create time) when ``create_time`` is given."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - create_time) < 1e-3
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def lease_owner_alive(owner: LeaseOwner) -> bool:
    return owner.host != socket.gethostname() or process_alive(owner.pid, owner.create_time)


def _fault(point: str) -> None:
    """Crash-test hook: SIGKILL this process at the named point when HF_SUMMARY_FAULT_POINT names it."""
    if os.environ.get("HF_SUMMARY_FAULT_POINT") != point:
        return
    delay = float(os.environ.get("HF_SUMMARY_FAULT_DELAY", "0"))
    if delay:
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
    else:
        os.kill(os.getpid(), signal.SIGKILL)


class Uploader:
    """Drains one journal into one repo. ``parent`` is the trainer to watch (None: nobody, drain and exit)."""

    def __init__(
        self,
        journal: Journal,
        settings: RunSettings,
        *,
        token: str | None,
        parent: tuple[int, float] | None,
        drain_timeout: float,
        wakeups: queue.Queue | None = None,
        closing: threading.Event | None = None,
    ):
        self.journal = journal
        self.settings = settings
        self.client = HubClient(
            repo_id=settings.repo_id,
            repo_type=settings.repo_type,
            revision=settings.revision,
            endpoint=settings.endpoint,
            token=token,
        )
        self.parent = parent
        self.drain_timeout = drain_timeout
        self.wakeups = wakeups if wakeups is not None else queue.Queue()
        self.owner = LeaseOwner(os.getpid(), psutil.Process().create_time(), socket.gethostname())
        self._closing = parent is None
        self._deadline: float | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self._repo_ready = False
        self._permanent_error: str | None = None
        self._next_heartbeat = 0.0
        if closing is not None and math.isfinite(drain_timeout):  # set by the pipe reader on "close" or EOF
            threading.Thread(target=self._watch_deadline, args=(closing,), name="deadline", daemon=True).start()

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Take the lease (waiting while another live drainer holds it), drain until done; exit status."""
        while not self.journal.acquire_lease(self.owner, lease_owner_alive):
            self._wait(POLL_INTERVAL_S)
            if self._closing and not self._parent_alive():
                logger.info("another uploader holds the lease of %s and will drain it", self.journal.logdir)
                return 0
        try:
            return self.drain()
        finally:
            with contextlib.suppress(OSError, sqlite3.Error):  # a dead holder's lease is taken over anyway
                self.journal.release_lease(self.owner)

    def drain(self) -> int:
        """Push until nothing is pending or the drain deadline passes; the caller holds the lease. Exit status.

        A journal that cannot be written for a while (disk full, I/O error, a lock held past the busy timeout)
        is retried, not fatal: the segments are safe on disk meanwhile."""
        while True:
            try:
                return self._drain()
            except (OSError, sqlite3.OperationalError) as exc:
                logger.warning("cannot use the journal of %s (%s); retrying in %.0f s",
                               self.journal.logdir, exc, JOURNAL_RETRY_S)
                if self._closing and self._deadline is None:
                    self._deadline = time.monotonic() + self.drain_timeout
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    logger.error("drain deadline passed; run `hf-summary recover %s`", self.journal.logdir)
                    return 1
                self._wait(JOURNAL_RETRY_S)

    def _drain(self) -> int:
        seal_abandoned(self.journal, self._writer_alive)
        while True:
            if time.monotonic() >= self._next_heartbeat:  # an fsynced write: not on every poll
                self.journal.heartbeat(self.owner)
                self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S
            if not self._closing and not self._parent_alive():
                logger.info("trainer %s is gone; final drain of %s", self.parent, self.journal.logdir)
                self._closing = True
            if self._closing:
                if self._deadline is None:
                    self._deadline = time.monotonic() + self.drain_timeout
                seal_abandoned(self.journal, self._writer_alive)
            pending = self.journal.pending_segments()
            if pending and time.monotonic() >= self._next_attempt:
                self.push(pending)
                continue
            if self._closing:
                if not pending and not self._parent_open_segments():
                    return 0
                if self._permanent_error is not None:
                    logger.error("giving up on %s: %s", self.journal.logdir, self._permanent_error)
                    return 2
                if time.monotonic() >= self._deadline:
                    logger.error(
                        "drain deadline passed with %d segment(s) pending in %s; run `hf-summary recover %s`",
                        len(pending), self.journal.logdir, self.journal.logdir,
                    )
                    return 1
            self._wait(max(0.0, min(POLL_INTERVAL_S, self._next_attempt - time.monotonic())) or POLL_INTERVAL_S)

    def _watch_deadline(self, closing: threading.Event) -> None:
        """Watchdog thread. The loop checks the deadline between pushes, but a push can outlast it (it may have
        started before the close request; huggingface_hub retries some requests on its own; a connection can
        hang): end the process a little after the deadline regardless. What was not pushed stays pending in
        the journal for ``hf-summary recover``."""
        closing.wait()
        time.sleep(self.drain_timeout + DEADLINE_GRACE_S)
        logger.error("drain deadline passed during a push; giving up on %s. Run `hf-summary recover %s`",
                     self.journal.logdir, self.journal.logdir)
        for handler in logger.handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(1)

    def _wait(self, timeout: float) -> None:
        try:
            message = self.wakeups.get(timeout=timeout)
        except queue.Empty:
            return
        if message is _EOF or message == "close":
            self._closing = True

    def _parent_alive(self) -> bool:
        return self.parent is not None and process_alive(*self.parent)

    def _writer_alive(self, pid: int, create_time: float | None) -> bool:
        if self.parent is not None and pid == self.parent[0]:
            return self._parent_alive()
        return process_alive(pid, create_time)

    def _parent_open_segments(self) -> list[SegmentRow]:
        if self.parent is None or not self._parent_alive():
            return []
        return [row for row in self.journal.open_segments() if row.writer_pid == self.parent[0]]

    # ---------------------------------------------------------------- one push

    def push(self, pending: list[SegmentRow]) -> bool:
        """One commit carrying every pending segment; returns whether the Hub took it."""
        _fault("after_claim")
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
        if not rows:
            return False
        pushed_assets = self.journal.get_value("assets", {})
        assets = changed_assets(self.journal.logdir, self.settings, pushed_assets)
        for relative in assets:
            run, _, name = relative.rpartition("/")
            files.append((self.journal.logdir / relative, repo_path(self.settings, run, name)))
        size = sum(row.size or 0 for row in rows)
        try:
            if not self._repo_ready:
                self.client.ensure_repo(private=self.settings.private)
                self._repo_ready = True
            _fault("during_upload")
            result = self.client.commit_files(files, f"hf-summary: {len(rows)} segment(s), {size} bytes")
        except HubError as exc:
            self._on_failure(rows, exc, permanent=isinstance(exc, PermanentHubError))
            return False
        _fault("after_commit")
        self.journal.mark_committed([row.id for row in rows], result.oid, result.url)
        if assets:
            self.journal.set_value("assets", {**pushed_assets, **assets})
        logger.info("pushed %d segment(s), %d bytes, in commit %s", len(rows), size, result.oid)
        self._failures = 0
        self._permanent_error = None
        self._next_attempt = 0.0
        self._after_commit()
        return True

    def _after_commit(self) -> None:
        if self.settings.squash_history:
            _fault("during_squash")
            try:
                self.client.squash(f"Squash {self.settings.path_in_repo} history (hf-summary)")
                self.journal.record_event("squash", "history squashed")
            except HubError as exc:
                logger.warning("could not squash the history (will try after the next commit): %s", exc)
        if not self.journal.get_value("card_tagged", False):
            try:
                self.client.tag_card()
                self.journal.set_value("card_tagged", True)
            except HubError as exc:
                logger.warning("could not tag the repo card (will try after the next commit): %s", exc)

    def _on_failure(self, rows: list[SegmentRow], exc: Exception, *, permanent: bool) -> None:
        message = str(exc)
        self.journal.record_failure([row.id for row in rows], message, permanent=permanent)
        self._failures += 1
        if permanent:
            if message != self._permanent_error:
                logger.error(
                    "push to %s %r failed and retrying will not help until this is fixed: %s",
                    self.settings.repo_type, self.settings.repo_id, message,
                )
            self._permanent_error = message
            self._repo_ready = False
            delay = PERMANENT_RETRY_S
        else:
            retry_after = getattr(exc, "retry_after", None)
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (self._failures - 1))
            delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.0)
            logger.warning("push failed (attempt %d), retrying in %.1f s: %s", self._failures, delay, message)
        self._next_attempt = time.monotonic() + delay


def _read_wakeups(stream, wakeups: queue.Queue, closing: threading.Event) -> None:
    for line in stream:
        wakeups.put(line.strip())
        if line.strip() == "close":
            closing.set()
    closing.set()
    wakeups.put(_EOF)


def _configure_logging(logdir: Path) -> None:
    log_path = logdir / JOURNAL_DIR / "uploader.log"
    handlers: list[logging.Handler] = []
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:  # e.g. a full disk: log to stderr only, and push anyway
        print(f"hf-summary uploader: cannot open {log_path}: {exc}", file=sys.stderr)
    else:
        to_file = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        to_file.setLevel(logging.INFO)
        handlers.append(to_file)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    handlers.append(to_stderr)
    formatter = logging.Formatter(f"%(asctime)s hf-summary uploader[{os.getpid()}] %(levelname)s %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_summary.uploader", description=__doc__)
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--parent-create-time", type=float, required=True)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    hello = json.loads(sys.stdin.readline() or "{}")
    wakeups: queue.Queue = queue.Queue()
    closing = threading.Event()
    threading.Thread(target=_read_wakeups, args=(sys.stdin, wakeups, closing), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_logging(args.logdir)
    use_timeouts()
    try:
        with Journal(args.logdir, create=False) as journal:
            settings = journal.load_settings()
            if settings is None:
                logger.error("journal of %s has no settings; nothing to push", args.logdir)
                return 2
            uploader = Uploader(
                journal,
                settings,
                token=hello.get("token"),
                parent=(args.parent_pid, args.parent_create_time),
                drain_timeout=args.drain_timeout,
                wakeups=wakeups,
                closing=closing,
            )
            return uploader.run()
    except JournalError as exc:
        logger.error("cannot use the journal of %s: %s", args.logdir, exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
