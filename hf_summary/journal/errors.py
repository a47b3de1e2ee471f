"""The journal's exceptions, and how SQLite's errors map onto them (or onto the OSError a plain file write raises)."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from pathlib import Path

_SECRET = re.compile(r"hf_[A-Za-z0-9]{16,}|(?<=[Bb]earer )[A-Za-z0-9._~+/=-]+")


class JournalError(Exception):
    """Base class of journal errors; also raised for refused state changes."""


class JournalCorruptError(JournalError):
    """The file is not an SQLite database, fails an integrity check, or is not an hf-summary journal."""


class JournalVersionError(JournalError):
    """The journal was written by another schema version."""


def redact(text: str) -> str:
    """`text` with token-like strings replaced by `***` (no token is ever stored in the journal)."""
    return _SECRET.sub("***", text)


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether `exc` says the file is damaged or not a database."""
    # SQLITE_CORRUPT / SQLITE_NOTADB surface as the base class; busy, constraint, misuse... as subclasses.
    return type(exc) is sqlite3.DatabaseError


def as_os_error(exc: sqlite3.DatabaseError, path: Path) -> OSError | None:
    """SQLITE_FULL / SQLITE_IOERR as the OSError a plain file write raises (ENOSPC / EIO), so that callers (`add_*`
    in the trainer) see what tensorboardX raises on a full disk; None for other errors."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    primary = code & 0xFF if code is not None else None
    text = str(exc)
    if primary == 13 or (primary is None and "database or disk is full" in text):  # SQLITE_FULL
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (journal: {text})", str(path))
    if primary == 10 or (primary is None and "disk I/O error" in text):  # SQLITE_IOERR
        return OSError(errno.EIO, f"{os.strerror(errno.EIO)} (journal: {text})", str(path))
    return None
