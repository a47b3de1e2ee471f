"""The uploader child's own process settings (only it calls these: it owns its interpreter, the trainer's
settings are left alone): its log, request timeouts, no progress bars, and a private scratch directory for
hf_xet."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub.utils import disable_progress_bars

from hf_summary.hub import use_timeouts
from hf_summary.liveness import process_alive
from hf_summary.reconcile import JOURNAL_DIR

logger = logging.getLogger("hf_summary")
XET_SHARD_CACHE_BYTES = 8 << 20  # hf_xet's shard cache in the scratch directory


def configure_logging(logdir: Path) -> None:
    """INFO and up to `LOGDIR/.hf_summary/uploader.log`, warnings and up to stderr (the trainer's)."""
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


def prepare_process(logdir: Path) -> Path:
    """Request timeouts (a hung Hub is retried instead of blocking a drain past its deadline); no progress bars
    (Xet uploads draw them on the stderr the child shares with the trainer's log); hf_xet's cache and logs in
    a scratch directory of this process, not in the user's HF_HOME (segments are uploaded once: nothing to
    deduplicate against later), and its temporary files there too, so that one killed mid-way leaves nothing
    in the temp dir. Returns the scratch directory, for the caller to remove on its way out."""
    use_timeouts()
    disable_progress_bars()
    scratch = _scratch_dir(logdir)
    os.environ["HF_XET_CACHE"] = str(scratch / "cache")
    os.environ["HF_XET_LOG_DEST"] = str(scratch / "logs") + os.sep  # a trailing "/": a folder
    # bounded whatever the run's length: hf_xet logs a few KB per upload at its default level, and keeps a
    # shard per upload in its cache (the Hub's dedup answers for chunks it drops)
    os.environ.setdefault("RUST_LOG", "warn")
    os.environ.setdefault("HF_XET_SHARD_CACHE_SIZE_LIMIT", str(XET_SHARD_CACHE_BYTES))
    temp = scratch / "tmp"  # the card's download, and whatever else needs a temporary file
    with contextlib.suppress(OSError):
        temp.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(temp)
    return scratch


def _scratch_dir(logdir: Path) -> Path:
    """`LOGDIR/.hf_summary/xet/<pid>`, this process's scratch for hf_xet (never uploaded: the journal's
    directory is not). Those of uploaders that are gone (a SIGKILL, the deadline's `os._exit`) are removed
    first, so they never pile up."""
    root = logdir / JOURNAL_DIR / "xet"
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if not (entry.name.isdigit() and process_alive(int(entry.name))):
                shutil.rmtree(entry, ignore_errors=True)
    mine = root / str(os.getpid())
    with contextlib.suppress(OSError):  # e.g. a full disk: hf_xet then says so on its own
        for folder in (root, mine):  # each level private, whatever the umask
            folder.mkdir(exist_ok=True, mode=0o700)
    return mine
