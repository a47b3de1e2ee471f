"""`hf-summary watch`: push the logdir of a writer we do not control (Keras, `tf.summary`, CLU, Lightning's stock
logger, tensorboardX or torch's own `SummaryWriter`) with the guarantees of `HFSummaryWriter`.

Every `commit_every` minutes the watcher copies the new complete records of each foreign event file into a
sealed, journaled segment (`hf_summary.tailcopy`) and wakes its uploader child (the same one
`HFSummaryWriter` starts), which pushes them in one commit together with the other matching files that changed
(`hparams.yaml`, `projector_config.pbtxt`...; one that changes alone is pushed at the next tick). For
month-long runs the copies behave as the writer's segments: compaction merges them on the Hub (a bounded number
of files per event file: `8 * (floor(log8 n) + 1)` for `n` ticks that found it grown), and each tick removes
the local copies the Hub holds. A merge is pushed as a checked byte range of the event file
(`hf_summary.hub.ranges`), never written to disk, so the disk used beyond the event files is bounded
whatever the run's length: the copies not pushed yet (one tick's growth while the Hub takes the pushes) and the
uploader's hf_xet scratch (its shard cache capped at 8 MiB), besides the journal and the uploader's log, which
grow by about 1 KB per copy and a line per push. A tick lists only the directories that changed and reads only
what each event file gained.

It runs until SIGINT, [`Watcher.stop`][hf_summary.watch.Watcher.stop] or the end of the watched job's process
(`pid`), then copies every complete record left and pushes it within `drain_timeout`; or until SIGTERM or
SIGHUP (preemption), then does the uploader's urgent final drain: for `grace_period` seconds it goes on
copying what the job still writes on its way out and pushes it at once, and leaves as soon as the job (`pid`)
is gone and everything is pushed. A second stop signal leaves at once. One watcher per logdir at a time (a
lock in `LOGDIR/.hf_summary`); a restarted one resumes where the journal says.

Example:
    ```py
    >>> from hf_summary.watch import start_watch
    >>> watcher = start_watch("logs/fit", repo_id="username/my-run", commit_every=1)   # beside this process
    >>> # model.fit(..., callbacks=[keras.callbacks.TensorBoard("logs/fit")])
    >>> watcher.stop()                                         # final push, bounded; returns the exit status
    ```
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from hf_summary import _early_signals
from hf_summary._arguments import check_grace_period, check_minutes, check_seconds, join_path_in_repo
from hf_summary.exit_status import ExitStatus
from hf_summary.hub import PermanentHubError, check_repo_id, client_for, probe
from hf_summary.journal import Journal, RunSettings, journal_path
from hf_summary.liveness import process_alive
from hf_summary.patterns import check_patterns
from hf_summary.reconcile import open_or_rebuild
from hf_summary.tailcopy import TailCopier
from hf_summary.uploader import protocol
from hf_summary.uploader.launcher import UploaderProcess, child_environment

__all__ = [
    "DEFAULT_ASSET_PATTERNS",
    "WatchBusyError",
    "WatchError",
    "WatchProcess",
    "Watcher",
    "start_watch",
    "watch",
]

logger = logging.getLogger("hf_summary")

DEFAULT_ASSET_PATTERNS = ("*.pbtxt", "*.yaml", "*.yml", "*.tsv")
POLL_INTERVAL_S = 0.5
_LOCK_FILE = "watch.lock"
_WATCH_FLAG = "watch"
_PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class WatchError(Exception):
    """The watcher cannot start; the message says what to do."""


class WatchBusyError(WatchError):
    """Another watcher is watching the logdir."""


class Watcher:
    """Watches one logdir and pushes it to `repo_id` until [`stop`][hf_summary.watch.Watcher.stop] (or the end
    of process `pid`).

    Args:
        logdir: the directory the foreign writer logs to (created if missing).
        repo_id: the repo to push to; created if missing.
        commit_every: minutes between two copies and pushes (default 5).
        repo_type, revision: `model` (default), `dataset` or `space`; the branch (default `main`).
        path_in_repo: folder in the repo; the logdir's name is appended (default `tensorboard`).
        assets: glob patterns of the other files to push when they change (default
            `DEFAULT_ASSET_PATTERNS`); event files always go through copies, never as such.
        token: Hub token (default: `HF_TOKEN` or the stored login); handed to the uploader over a pipe.
        pid: also stop (and drain) when this process ends.
        drain_timeout: seconds the final push may take after [`stop`][hf_summary.watch.Watcher.stop] or the
            end of `pid` (default 600).
        grace_period: seconds the final push may take after [`preempt`][hf_summary.watch.Watcher.preempt]
            (SIGTERM, SIGHUP; default `HF_SUMMARY_GRACE_PERIOD` or 8, as the uploader's).
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        repo_id: str,
        *,
        commit_every: float = 5,
        repo_type: str | None = None,
        revision: str | None = None,
        path_in_repo: str | None = "tensorboard",
        assets: list[str] | tuple[str, ...] | str | None = DEFAULT_ASSET_PATTERNS,
        token: str | None = None,
        pid: int | None = None,
        drain_timeout: float = 600.0,
        grace_period: float | None = None,
    ) -> None:
        check_repo_id(repo_id)
        check_minutes("commit_every", commit_every)
        check_seconds("drain_timeout", drain_timeout)
        self.logdir = Path(logdir).resolve()
        if self.logdir.exists() and not self.logdir.is_dir():
            raise NotADirectoryError(f"logdir {str(self.logdir)!r} exists and is not a directory")
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.settings = RunSettings(
            repo_id=repo_id,
            repo_type=repo_type or "model",
            revision=revision or "main",
            path_in_repo=join_path_in_repo(path_in_repo, self.logdir.name),
            allow_patterns=check_patterns("assets", list(assets) if isinstance(assets, tuple) else assets) or [],
            ignore_patterns=["*tfevents*"],
            squash_history=False,
            commit_every_s=float(commit_every) * 60.0,
            private=None,
            endpoint=os.environ.get("HF_ENDPOINT"),
        )
        self.token = token
        self.drain_timeout = float(drain_timeout)
        self.grace_period = check_grace_period(grace_period)
        self._job: tuple[int, float] | None = None
        if pid is not None:
            try:
                self._job = (pid, psutil.Process(pid).create_time())
            except psutil.NoSuchProcess:
                raise WatchError(f"there is no process {pid} to watch (--pid)") from None
        self._wake = threading.Event()
        self._stopping = False
        self._preempted: str | None = None
        self._copy_requested = False
        self._uploader: UploaderProcess | None = None

    def stop(self) -> None:
        """Ask [`run`][hf_summary.watch.Watcher.run] to copy what is left, push it (within `drain_timeout`)
        and return. Safe from a signal handler or another thread."""
        self._stopping = True
        self._wake.set()

    def preempt(self, cause: str = "preempted") -> None:
        """Like [`stop`][hf_summary.watch.Watcher.stop], urgently: the final push gets `grace_period` seconds
        (the job is being stopped). Safe from a signal handler or another thread."""
        self._preempted = self._preempted or cause
        self.stop()

    @property
    def stopping(self) -> bool:
        """Whether [`stop`][hf_summary.watch.Watcher.stop] or [`preempt`][hf_summary.watch.Watcher.preempt]
        was called."""
        return self._stopping

    def _copy_soon(self) -> None:
        """The uploader asks for a seal (it was preempted): copy at once (runs on its answers' thread)."""
        self._copy_requested = True
        self._wake.set()

    def run(self) -> int:
        """Watch until [`stop`][hf_summary.watch.Watcher.stop], [`preempt`][hf_summary.watch.Watcher.preempt]
        or the end of `pid`, then copy and push what is left.

        Returns 0 when the Hub holds every copied record, 1 when some are still pending (`hf-summary recover
        LOGDIR` pushes them). Raises [`WatchBusyError`][hf_summary.watch.WatchBusyError] when another watcher
        holds the logdir and [`WatchError`][hf_summary.watch.WatchError] when the token cannot write to the
        repo or the logdir belongs to an `HFSummaryWriter` or to another repo.
        """
        self._check_access()
        with self._locked(), self._journal() as journal:
            copier = TailCopier(journal, self.settings)
            logger.info("watching %s; pushing to %s %s, folder %s", self.logdir, self.settings.repo_type,
                        self.settings.repo_id, self.settings.path_in_repo)
            next_tick = time.monotonic()
            while not (self.stopping or self._job_gone()):
                if self._copy_requested or time.monotonic() >= next_tick:
                    self._copy_requested = False
                    if self._copy(journal, copier) or self.settings.allow_patterns:  # an asset alone may change
                        self._ensure_uploader().request_push()
                    next_tick = time.monotonic() + self.settings.commit_every_s
                self._sleep(next_tick - time.monotonic())
            if self._preempted:
                status = self._preempted_drain(journal, copier)
                self._remove_pushed(copier)
                return status
            self._copy(journal, copier, full=True)
            status = self._final_drain(journal)
            self._remove_pushed(copier)
            return status

    def _check_access(self) -> None:
        """Fail at once when the token cannot write to the repo; a Hub that does not answer within a few seconds
        only delays the pushes (the uploader retries)."""
        try:
            probe(client_for(self.settings, self.token).check_write_access, doing="watching")
        except PermanentHubError as exc:
            raise WatchError(
                f"cannot write to {self.settings.repo_type} repo {self.settings.repo_id!r}: {exc}. Check the "
                "token (HF_TOKEN or `hf auth login`) and that it may write to this namespace"
            ) from None

    def _job_gone(self) -> bool:
        return self._job is not None and not process_alive(*self._job)

    def _sleep(self, timeout: float) -> None:
        """Until `timeout` (at most a poll interval) or a wake-up (stop, preemption, a copy request)."""
        self._wake.wait(max(0.0, min(POLL_INTERVAL_S, timeout)))
        self._wake.clear()

    def _copy(self, journal: Journal, copier: TailCopier, *, full: bool = False) -> bool:
        """Remove the local copies the Hub holds, copy what is new (`full`: listing every directory again);
        returns whether anything is pending."""
        try:
            copier.remove_pushed()
            if copied := copier.copy_new_records(full=full):
                logger.debug("copied the new records of %d file(s)", len(copied))
            return bool(journal.pending_segments())
        except (OSError, sqlite3.OperationalError) as exc:  # disk full, I/O error, a journal locked too long:
            # the foreign files keep their records, copied the next time
            logger.warning("could not copy the new records of %s (%s); retrying", self.logdir, exc)
            return False

    def _remove_pushed(self, copier: TailCopier) -> None:
        try:
            copier.remove_pushed()
        except (OSError, sqlite3.OperationalError) as exc:  # they go at the next watcher's first tick
            logger.warning("could not remove the pushed copies of %s (%s)", self.logdir, exc)

    def _ensure_uploader(self) -> UploaderProcess:
        if self._uploader is None or not self._uploader.is_running():
            self._uploader = UploaderProcess(
                self.logdir,
                token=self.token,
                drain_timeout=self.drain_timeout,
                grace_period=self.grace_period,
                on_seal=self._copy_soon,
            )
        return self._uploader

    def _final_drain(self, journal: Journal) -> int:
        """Push what is pending within `drain_timeout` (a second uploader if the first one died with work
        left), then stop the uploader."""
        deadline = time.monotonic() + self.drain_timeout
        for _ in range(2):
            if not journal.pending_segments():
                break
            uploader = self._ensure_uploader()
            uploader.request_close()
            uploader.wait(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                break
        return self._finish(journal, deadline)

    def _preempted_drain(self, journal: Journal, copier: TailCopier) -> int:
        """For `grace_period` seconds: copy what the job still writes (its last flush on its way out) and push
        it urgently; leave as soon as the job (`pid`) is gone and nothing is pending. Without `pid` the job's
        end cannot be seen, so this lasts the whole grace period."""
        deadline = time.monotonic() + self.grace_period
        logger.info("%s: copying and pushing what is left within %.1f s", self._preempted, self.grace_period)
        while time.monotonic() < deadline:
            job_gone = self._job_gone()
            if self._copy(journal, copier):
                uploader = self._ensure_uploader()
                slice_s = max(0.0, min(POLL_INTERVAL_S, deadline - time.monotonic()))
                uploader.wait_drained(uploader.request_preempted_push(), slice_s)
            elif job_gone:
                break
            else:
                self._sleep(deadline - time.monotonic())
        return self._finish(journal, deadline)

    def _finish(self, journal: Journal, deadline: float) -> int:
        if self._uploader is not None and self._uploader.is_running():
            self._uploader.request_close()  # nothing left (it exits), or out of time (it goes on within its budget)
            self._uploader.wait(max(0.0, deadline - time.monotonic()))
        pending = journal.pending_segments()
        if pending:
            logger.error("%d copied segment(s) of %s are not on the Hub yet; `hf-summary recover %s` pushes them",
                         len(pending), self.logdir, self.logdir)
            return ExitStatus.INCOMPLETE
        logger.info("the Hub holds everything %s logged", self.logdir)
        return ExitStatus.OK

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One watcher per logdir: an exclusive `flock` that the kernel releases whenever this process ends."""
        directory = journal_path(self.logdir).parent
        directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise WatchBusyError(
                    f"another hf-summary watch (pid {holder}) is watching {self.logdir}; stop it first"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _journal(self) -> Iterator[Journal]:
        journal, _ = open_or_rebuild(self.logdir, self.settings)
        try:
            previous = journal.load_settings()
            if journal.get_value(_WATCH_FLAG) is None and journal.segments():
                raise WatchError(
                    f"{self.logdir} is the logdir of an HFSummaryWriter, which pushes it itself; watch the logdir "
                    "of a writer that does not, or log with HFSummaryWriter to another logdir"
                )
            if previous is not None and previous.destination != self.settings.destination and (
                journal.pending_segments()
            ):
                raise WatchError(
                    f"{self.logdir} has copies pending for {previous.repo_type} {previous.repo_id!r} (folder "
                    f"{previous.path_in_repo!r}); push them first with `hf-summary recover {self.logdir}`"
                )
            journal.save_settings(self.settings)
            journal.set_value(_WATCH_FLAG, True)
            yield journal
        finally:
            journal.close()


def watch(logdir: str | os.PathLike[str], repo_id: str, *, once: bool = False, **options: Any) -> int:
    """Run a [`Watcher`][hf_summary.watch.Watcher] in this thread until SIGTERM or SIGHUP
    ([`Watcher.preempt`][hf_summary.watch.Watcher.preempt]), SIGINT
    ([`Watcher.stop`][hf_summary.watch.Watcher.stop]) or the end of `pid`; returns its exit status. With
    `once`, copy and push what the logdir holds now, then return (after the job ended, or after a lost node:
    what the journal holds is pushed too). The signal handlers are installed only from the main thread, and
    restored afterwards.

    Example:
        ```py
        >>> from hf_summary.watch import watch
        >>> status = watch("lightning_logs", repo_id="username/my-run", commit_every=5)   # blocks
        ```
    """
    watcher = Watcher(logdir, repo_id, **options)
    if once:
        watcher.stop()

    def on_signal(signum: int, frame: object) -> None:
        if watcher.stopping:
            raise KeyboardInterrupt  # a second stop signal: leave the rest to the uploader and `watch --once`
        if signum == signal.SIGINT:
            watcher.stop()
        else:
            watcher.preempt(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, *_PREEMPT_SIGNALS)}
        _early_signals.replay(on_signal)  # what `hf-summary watch` held while it was starting
    try:
        return watcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class WatchProcess:
    """A watcher process started by [`start_watch`][hf_summary.watch.start_watch]: a fresh interpreter in its
    own session."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self.pid = proc.pid

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGINT it (final push, bounded by its `drain_timeout`) and wait up to `timeout` s (default:
        forever); its exit status, or `None` if it is still pushing."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def is_running(self) -> bool:
        return self._proc.poll() is None


def start_watch(
    logdir: str | os.PathLike[str], repo_id: str, *, token: str | None = None, pid: int | None = None, **options: Any
) -> WatchProcess:
    """Start `hf-summary watch` beside this process, watching it (`pid`, default this process): when this
    process ends, however it ends, the watcher pushes what is left and exits. Options as for
    [`Watcher`][hf_summary.watch.Watcher].

    Example:
        ```py
        >>> from hf_summary.watch import start_watch
        >>> watcher = start_watch("runs/exp1", repo_id="username/my-run", commit_every=1)
        >>> watcher.stop(timeout=120)
        0
        ```
    """
    Watcher(logdir, repo_id, **options)  # refuse bad arguments here, not in the child
    argv = [sys.executable, "-m", "hf_summary", "watch", str(Path(logdir).resolve()), "--repo-id", repo_id,
            "--pid", str(os.getpid() if pid is None else pid), "--token-from-stdin"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if name == "assets":
            patterns = [value] if isinstance(value, str) else list(value or [])
            argv += [f"--asset={pattern}" for pattern in patterns] if patterns else ["--no-assets"]
        elif name == "path_in_repo":
            argv.append(f"--path-in-repo={value or ''}")
        elif value is not None:
            argv.append(f"{flag}={value}")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, start_new_session=True, env=child_environment(),
                            close_fds=True)
    proc.stdin.write(protocol.token_line(token))
    proc.stdin.close()
    return WatchProcess(proc)
