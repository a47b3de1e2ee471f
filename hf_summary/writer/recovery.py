"""A logdir removed under the running writer (`rm -rf`): noticed by the ticker, what its open segments held
read back and written out again, and, if the journal went too, the logdir made again with a new journal."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
from pathlib import Path

from hf_summary.journal import Journal, RunSettings
from hf_summary.reconcile import open_or_rebuild
from hf_summary.segments import parse_segment_sequence
from hf_summary.writer.rolling import SIGNAL_LOCK_WAIT_S
from hf_summary.writer.startup import prepare_logdir

logger = logging.getLogger("hf_summary")


class LogdirRecovery:
    """Mixed into `HFSummaryWriter`: works on `SegmentRolling`'s segments and
    `HeldEvents`' backlog, and restarts the uploader and presence on a new journal."""

    _settings: RunSettings
    _logdir_path: Path
    _run_id: str
    _journal: Journal

    def _logdir_removed(self) -> bool:
        """Whether the journal, or the file of an open segment, was removed under the writer (`rm -rf`)."""
        return not self._journal.path.exists() or any(o.segment.unlinked() for o in list(self._segments.values()))

    def _recreate_logdir(self) -> bool:
        """Ticker: the logdir (or part of it) was removed while the writer ran. Read back what the removed open
        segments held and hold it ahead of any held event (written out again next); if the journal went too, make
        the logdir again with a fresh journal (which adopts the segments still on disk) and restart the uploader
        on it. What was pushed stays on the Hub; the run goes on there under the same run id, with later
        sequences. Returns whether it could."""
        journal_gone = not self._journal.path.exists()
        with self._lock:
            self._holding = True  # add_* only appends meanwhile
            removed = {run: o for run, o in self._segments.items() if journal_gone or o.segment.unlinked()}
            for run in removed:
                del self._segments[run]
            prepared, self._prepared = (list(self._prepared.values()), {}) if journal_gone else ([], self._prepared)
            if journal_gone:
                self._unrecorded.clear()  # rows of the lost journal; files still on disk are adopted anew
        salvaged: list[tuple[str, bytes]] = []
        last_sequence = 0
        for run, opened in removed.items():
            last_sequence = max(last_sequence, parse_segment_sequence(opened.segment.path.name) or 0)
            if opened.segment.unlinked():
                salvaged.extend((run, data) for data in opened.segment.salvage()[1:])  # not its header record
                if not journal_gone and opened.row_id is not None:
                    self._unrecorded.append((opened.row_id, opened.segment.path, None))  # its row gets dropped
            else:
                with contextlib.suppress(OSError):
                    opened.segment.seal()
        for opened in prepared:
            with contextlib.suppress(OSError):
                opened.segment.discard()
        cause = f"{self.logdir} was removed"
        if journal_gone and not self._replace_journal(last_sequence, len(salvaged)):
            with self._lock:
                self._backlog.put_first(salvaged, cause)
            return False
        with self._lock:
            self._backlog.put_first(salvaged, cause)
        self._episode_recorded = False
        logger.warning("%s (or part of it) was removed while the writer ran: %s; %d event(s) of the removed open "
                       "segments are written out again", self.logdir,
                       "made it again with a new journal" if journal_gone else "its journal is intact", len(salvaged))
        return True

    def _replace_journal(self, last_sequence: int, salvaged: int) -> bool:
        """The journal was removed: stop its uploader and presence, and go on with a new one (False: not yet)."""
        if self._uploader is not None and self._uploader.is_running():  # it drains the removed journal
            os.kill(self._uploader.pid, signal.SIGKILL)
            self._uploader.wait(SIGNAL_LOCK_WAIT_S)
        self._uploader = None
        self._presence.stop()
        # Closed before the new one opens: closing SQLite's last connection deletes its WAL file by path, which
        # would then be the new journal's.
        with contextlib.suppress(Exception):
            self._journal.close()
        try:
            journal = self._new_journal(last_sequence, salvaged)
        except (OSError, sqlite3.Error) as exc:  # e.g. the disk is full too: held, and tried again next turn
            logger.warning("%s was removed and cannot be made again yet (%s); retrying", self.logdir, exc)
            return False
        with self._lock:
            self._journal = journal
        with contextlib.suppress(OSError, sqlite3.Error):
            self._presence.start(journal)
        return True

    def _new_journal(self, last_sequence: int, salvaged: int) -> Journal:
        """The logdir made again, with a journal that goes on with this run (its run id, later sequences)."""
        prepare_logdir(Path(self.logdir))
        journal, _ = open_or_rebuild(self._logdir_path, self._settings)
        try:
            journal.set_value("run_id", self._run_id)
            journal.ensure_sequence_above(last_sequence)
            journal.record_event("disk", f"{self.logdir} was removed while the writer ran: made it again; "
                                         f"{salvaged} event(s) of its open segments written out again",
                                 salvaged=salvaged)
        except BaseException:
            journal.close()
            raise
        return journal
