"""The writer's start-up checks: its arguments, its logdir, its journal, access to its repo, and another run's files
already in the repo folder. Each fails at once, in the constructor, with a message that says what to do."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from pathlib import Path

from hf_summary import hub
from hf_summary._arguments import check_minutes, check_seconds, join_path_in_repo
from hf_summary.journal import Journal, RunSettings
from hf_summary.liveness import WriterPresence
from hf_summary.patterns import check_patterns
from hf_summary.reconcile import open_or_rebuild
from hf_summary.segments import is_event_file, parse_segment_run_id, parse_segment_sequence

logger = logging.getLogger("hf_summary")

EXISTING_RUN_CHOICES = ("continue", "error")
_COMMIT_EVERY_MIN = 5
_BUCKET_COMMIT_EVERY_MIN = 1  # no commit budget: push sooner


class ExistingRunError(FileExistsError):
    """The repo folder already holds another run's event files and `existing_run="error"` was asked."""


def default_commit_every(repo_type: str | None) -> int:
    """Minutes between two pushes when not given: a repo's commits are rate-limited, a bucket's uploads are not."""
    return _BUCKET_COMMIT_EVERY_MIN if repo_type == hub.BUCKET else _COMMIT_EVERY_MIN


def check_arguments(
    repo_id: str,
    *,
    commit_every: int | float,
    repo_type: str | None,
    repo_revision: str | None,
    repo_private: bool | None,
    squash_history: bool,
    token: str | None,
    close_timeout: float,
    drain_timeout: float,
    existing_run: str,
    held_events_limit: int,
) -> None:
    """The constructor's arguments that need no logdir; raises ValueError or TypeError saying what is accepted."""
    hub.check_repo_id(repo_id)
    check_minutes("commit_every", commit_every)
    if repo_type is not None and repo_type not in hub.TARGET_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(hub.TARGET_TYPES)}, got {repo_type!r}")
    if repo_private is not None and not isinstance(repo_private, bool):
        raise TypeError(f"repo_private must be True, False or None, got {repo_private!r}")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token must be a string or None, got a {type(token).__name__}")
    check_seconds("close_timeout", close_timeout)
    check_seconds("drain_timeout", drain_timeout)
    if existing_run not in EXISTING_RUN_CHOICES:
        raise ValueError(f"existing_run must be one of {', '.join(EXISTING_RUN_CHOICES)}, got {existing_run!r}")
    if repo_type == hub.BUCKET and (squash_history or repo_revision not in (None, "main")):
        raise ValueError("a bucket has no history and no branches: squash_history and repo_revision do not apply")
    if isinstance(held_events_limit, bool) or not isinstance(held_events_limit, int) or held_events_limit < 0:
        raise ValueError(f"held_events_limit must be a number of bytes >= 0, got {held_events_limit!r}")


def run_settings(
    repo_id: str,
    logdir: Path,
    *,
    commit_every: int | float,
    repo_type: str | None,
    repo_revision: str | None,
    repo_private: bool | None,
    path_in_repo: str | None,
    allow_patterns: list[str] | str | None,
    ignore_patterns: list[str] | str | None,
    squash_history: bool,
) -> RunSettings:
    """The push settings the journal records, from the constructor's arguments (the patterns checked here)."""
    return RunSettings(
        repo_id=repo_id,
        repo_type=repo_type or "model",
        revision=repo_revision or "main",
        path_in_repo=join_path_in_repo(path_in_repo, logdir.resolve().name),
        allow_patterns=check_patterns("repo_allow_patterns", allow_patterns),
        ignore_patterns=check_patterns("repo_ignore_patterns", ignore_patterns),
        squash_history=bool(squash_history),
        commit_every_s=float(commit_every) * 60.0,
        private=repo_private,
        endpoint=os.environ.get("HF_ENDPOINT"),
    )


def resolve_logdir(logdir, kwargs: dict) -> Path:
    """tensorboardX's logdir rule (`logdir`, else torch's `log_dir`, else `runs/DATE_HOST+comment`)."""
    log_dir = kwargs.pop("log_dir", None)
    chosen = logdir if logdir is not None else log_dir
    if chosen is None:
        stamp = datetime.now().strftime("%b%d_%H-%M-%S")
        chosen = os.path.join("runs", f"{stamp}_{socket.gethostname()}{kwargs.get('comment', '')}")
    return Path(os.fspath(chosen))


def prepare_logdir(logdir: Path) -> None:
    """Make the logdir (and its parents); refuse a filesystem root, a file, or a directory we cannot write."""
    resolved = logdir.resolve()
    if resolved.parent == resolved:
        raise ValueError(
            f"logdir {str(logdir)!r} is a filesystem root: the writer keeps its journal in the logdir and adopts the "
            "event files it finds under it, so give it a directory of its own (e.g. logdir='runs/exp1')"
        )
    if logdir.exists() and not logdir.is_dir():
        raise NotADirectoryError(f"logdir {str(logdir)!r} exists and is not a directory")
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create logdir {str(logdir)!r}: {exc.strerror}") from None
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise PermissionError(f"logdir {str(logdir)!r} is not writable")


def open_journal(logdir: Path, settings: RunSettings, presence: WriterPresence) -> tuple[Journal, str]:
    """The logdir's journal (rebuilt from disk if needed) with `settings` recorded, and the run's id; this writer
    is announced in it first. Refuses to switch a logdir whose segments are still pending for another destination
    (the presence stopped and the journal closed again)."""
    journal, _ = open_or_rebuild(logdir, settings)
    try:
        presence.announce(journal)  # first: another host seeing this journal must know it is written
        previous = journal.load_settings()
        if previous is not None and previous.destination != settings.destination and (
            journal.pending_segments() or journal.open_segments()
        ):
            raise ValueError(
                f"{logdir} has segments pending for {previous.repo_type} {previous.repo_id!r} "
                f"(path {previous.path_in_repo!r}); push them first with `hf-summary recover "
                f"{logdir}`, or log to another logdir"
            )
        journal.save_settings(settings)
        run_id = journal.run_id()
    except BaseException:
        presence.stop()
        journal.close()
        raise
    return journal, run_id


def check_repo_access(settings: RunSettings, token: str | None) -> dict[str, hub.RemoteFile] | None:
    """Create the repo now, as the original does, so that a bad token or repo fails at once; returns the files
    already in the repo folder. An unreachable Hub only delays the push: the check then gives up after a few
    seconds (returning None) and the uploader retries."""
    client = hub.client_for(settings, token)

    def attempt() -> dict[str, hub.RemoteFile]:
        client.ensure_repo(private=settings.private)
        client.check_write_access()
        return client.list_files(settings.path_in_repo)

    try:
        return hub.probe(attempt, doing="logging")
    except hub.PermanentHubError as exc:
        raise PermissionError(
            f"cannot write to {settings.repo_type} repo {settings.repo_id!r}: {exc}. "
            "Check the token (HF_TOKEN, `hf auth login` or token=) and that it may write to this namespace."
        ) from None


def check_existing_run(
    journal: Journal, settings: RunSettings, run_id: str, existing_run: str, remote: dict[str, hub.RemoteFile]
) -> None:
    """Say so, once, when the repo folder holds event files that another run pushed; continue that run
    (naming new segments after its files, so TensorBoard reads them in order) or refuse."""
    ours = {row.path_in_repo for row in journal.segments()}
    others: dict[str, int] = {}
    highest = 0
    for path in remote:
        name = path.rpartition("/")[2]
        if not is_event_file(name) or path in ours or parse_segment_run_id(name) == run_id:
            continue
        other = parse_segment_run_id(name) or "unknown"
        others[other] = others.get(other, 0) + 1
        highest = max(highest, parse_segment_sequence(name) or 0)
    if not others:
        return
    described = ", ".join(f"{other} ({count} file(s))" for other, count in sorted(others.items()))
    message = (
        f"{settings.repo_type} repo {settings.repo_id!r} already holds event files of another "
        f"run in {settings.path_in_repo!r}: run(s) {described}; this run is {run_id}."
    )
    if existing_run == "error":
        raise ExistingRunError(
            f"{message} Pass existing_run='continue' to log on into it as the same TensorBoard run (a "
            "requeued job), or choose another path_in_repo or logdir name."
        )
    logger.warning(
        "%s Logging on into it as the same TensorBoard run (right for a requeued job on a new node). If "
        "this is another experiment, choose another path_in_repo or logdir name; existing_run='error' "
        "refuses instead.", message,
    )
    journal.ensure_sequence_above(highest)
