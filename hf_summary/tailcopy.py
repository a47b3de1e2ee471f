"""Copy the complete records of event files we do not write (Keras, `tf.summary`, torch, tensorboardX, CLU) into
sealed, journaled copies, so that `hf-summary watch` pushes each byte once while those files keep growing.

Naming (the design, see docs/watch.md). Bytes `[start, end)` of foreign file
`RUN/SOURCE`, the `counter`-th copy taken of it, go to the repo as::

    PATH_IN_REPO/RUN/SOURCE.<run id>.<counter, 8 digits>.<start, 13 digits>-<end, 13 digits>.hfw

The name still contains `tfevents` and sits in the run's own folder, so TensorBoard reads the copies as that
run; the copies of one source sort by counter (taking order), and the copies of two sources sort as the sources
do (a reader sees every record once, in the order a fresh reader of the logdir sees them). The run id is the
journal's (`Journal.run_id`), as in `HFSummaryWriter`'s segment names: two logdirs of the same name that
share a repo folder never write the same path, even when their sources have the same name. `end` of a source's
last copy is the offset to resume at: the offset is part of the segment row, so it is journaled atomically with
the row that it produced. A source that shrinks, is replaced, or was rewritten in place (the bytes before the offset
are not the end of its last copy) starts a new generation at offset 0; its copies keep counting, so names stay
unique and in order. Caveat: when one source's name is another's prefix followed by
a character sorting below `.` (`host` and `host-2`), their copies sort the other way round.

Locally the copies live under `LOGDIR/.hf_summary/watch/RUN/SOURCE/<counter>.<start>-<end>.hfw`: no file name
there contains `tfevents`, so a TensorBoard reading the logdir never sees a record twice. A copy is written at
its final name, sealed (fsync), then recorded as a sealed segment; after a crash, a copy whose size is not
`end - start` was cut short and is removed (it was never journaled, so never pushed), and a complete one
that the journal lacks is adopted. Once the Hub holds a copy, its local file is removed
(`TailCopier.remove_pushed`): its row stays (it tells where copying resumes), and the end of the newest
copy of each source is kept in memory for the rewrite check (a restarted watcher hashes that range of the source
once against the row's sha256).

Compaction (`hf_summary.compaction`) merges `FANOUT` committed, contiguous copies of one source (one
generation) as it merges segments: the merged copy `<first counter>-<last counter>.<start>-<end>.hfw` sorts
where its first copy did and is built from bytes `[start, end)` of the source (`copy_range`), checked
against each member's sha256, and pushed from there as a byte range (`hf_summary.hub.ranges`): no local
copy is needed for it, and none is written.

Only complete, CRC-valid records are copied (never a torn tail); the scan resumes at the recorded offset, so a
copy costs what is new, not the size of the file.

Example:
    ```py
    >>> from hf_summary.journal import Journal
    >>> from hf_summary.tailcopy import TailCopier
    >>> with Journal("logs") as journal:                       # settings saved by hf-summary watch
    ...     copier = TailCopier(journal, journal.load_settings())
    ...     new_rows = copier.copy_new_records()                # one sealed segment per grown source
    ```
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hf_summary._faults import fault as _fault
from hf_summary.assets import AssetTracker
from hf_summary.journal import CompactionRow, Journal, RunSettings, SegmentRow
from hf_summary.reconcile import JOURNAL_DIR, logdir_relative, repo_path
from hf_summary.segments import (
    Segment,
    file_sha256,
    is_event_file,
    last_complete_offset,
    parse_segment_sequence,
    read_records,
)

__all__ = [
    "COPY_SUFFIX",
    "WATCH_DIR",
    "CopyName",
    "TailCopier",
    "copy_range",
    "merged_copy_name",
    "parse_repo_copy_name",
]

logger = logging.getLogger("hf_summary")

WATCH_DIR = "watch"
COPY_SUFFIX = ".hfw"
_COPY_PREFIX = f"{JOURNAL_DIR}/{WATCH_DIR}/"
_READ_CHUNK = 1 << 20
_TAIL_CHECK = 64 * 1024  # bytes of a file's last copy compared with the file before copying what follows
_STUCK_WARN_BYTES = 64 << 20  # this far past the last complete record, a record still being written is unlikely
_LOCAL_RE = re.compile(r"^(\d{8})(?:-(\d{8}))?\.(\d{13})-(\d{13})\.hfw$")
_REPO_RE = re.compile(r"^(.+)\.([0-9a-f]{8})\.(\d{8}(?:-\d{8})?\.\d{13}-\d{13}\.hfw)$")


@dataclass(frozen=True, order=True)
class CopyName:
    """Which copy of a source a file is: `counter`-th copy, bytes `[start, end)` of the source; or, with
    `last_counter`, the merge (`hf_summary.compaction`) of copies `counter .. last_counter`, which are
    contiguous bytes `[start, end)` of one generation of the source."""

    counter: int
    start: int
    end: int
    last_counter: int | None = None

    @property
    def merged(self) -> bool:
        return self.last_counter is not None

    @property
    def local_name(self) -> str:
        """The copy's file name under `.hf_summary/watch/RUN/SOURCE/`; a merged one's first counter sorts
        where its first copy did."""
        counters = f"{self.counter:08d}" + (f"-{self.last_counter:08d}" if self.merged else "")
        return f"{counters}.{self.start:013d}-{self.end:013d}{COPY_SUFFIX}"

    def repo_name(self, source: str, run_id: str) -> str:
        """The copy's file name in the run's folder of the repo."""
        return f"{source}.{run_id}.{self.local_name}"

    @classmethod
    def parse(cls, local_name: str) -> CopyName | None:
        """The inverse of `local_name`; `None` for other names."""
        match = _LOCAL_RE.match(local_name)
        if match is None:
            return None
        counter, last_counter, start, end = match.groups()
        return cls(int(counter), int(start), int(end), None if last_counter is None else int(last_counter))

    def continued_by(self, other: CopyName) -> bool:
        """Whether `other` holds the bytes that follow this one's in the same generation of the source."""
        return other.start == self.end and other.counter == (self.last_counter or self.counter) + 1


def merged_copy_name(first: str, last: str) -> str:
    """Local name of the merge of the contiguous copies `first` .. `last` (local names) of one source."""
    head, tail = CopyName.parse(first), CopyName.parse(last)
    if head is None or tail is None:
        raise ValueError(f"cannot name a merge of {first!r} .. {last!r}")
    return CopyName(head.counter, head.start, tail.end, tail.last_counter or tail.counter).local_name


def copy_range(logdir: Path, row: SegmentRow | CompactionRow) -> tuple[Path, int, int] | None:
    """`(source file, start, end)`: where the bytes of copy (or merged copy) `row` are in the foreign file it
    was taken from, as long as that file was not rewritten since; `None` for rows that are no copies."""
    key, copy = _source_of(row), CopyName.parse(row.name)
    if key is None or copy is None:
        return None
    return logdir / logdir_relative(*key), copy.start, copy.end


def parse_repo_copy_name(name: str) -> tuple[str, str, CopyName] | None:
    """`(source name, run id, CopyName)` of a copy's name in the repo, or `None` for other names.

    >>> parse_repo_copy_name("events.out.tfevents.1795714803.vm.1a2b3c4d.00000002.0000000000040-0000000000083.hfw")
    ('events.out.tfevents.1795714803.vm', '1a2b3c4d', CopyName(counter=2, start=40, end=83))
    """
    match = _REPO_RE.match(os.path.basename(name))
    if match is None:
        return None
    copy = CopyName.parse(match.group(3))
    return None if copy is None else (match.group(1), match.group(2), copy)


@dataclass
class _Source:
    """What has been copied of one foreign file."""

    run: str
    name: str
    next_counter: int = 1
    offset: int = 0
    last: tuple[int, int, str | None] | None = None  # (start, end = offset, sha256) of its newest copy
    tail: bytes | None = None  # the last bytes of its newest copy (up to _TAIL_CHECK), once read
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) when last looked at
    seen_size: int | None = None  # its size when everything complete in it was last copied
    stuck_warned: bool = False


class TailCopier:
    """Copies what is new in every foreign event file of a logdir into sealed segments of the journal.

    Not thread-safe, and one copier per logdir at a time (`hf-summary watch` holds a lock for it). Creating
    one resumes from the journal: at each source's recorded offset, after adopting or removing copies that a
    crash left unjournaled.
    """

    def __init__(self, journal: Journal, settings: RunSettings) -> None:
        self.journal = journal
        self.settings = settings
        self.root = journal.logdir / JOURNAL_DIR / WATCH_DIR
        self.run_id = journal.run_id()
        self._sources: dict[tuple[str, str], _Source] = {}
        self._removed: set[int] = set()  # committed copies whose local file is gone
        self._finder = AssetTracker(  # finds event files as the uploader finds assets: no walk of the whole logdir
            journal.logdir, dataclasses.replace(settings, allow_patterns=["*tfevents*"], ignore_patterns=[])
        )
        self._resume()

    # ---------------------------------------------------------------- resuming

    def _resume(self) -> None:
        rows = [(key, row) for row in self.journal.segments() if (key := _source_of(row)) is not None]
        known = {(row.run, row.name) for _, row in rows}
        for key, row in rows:
            self._remember(key, row)
        for key, path, copy in sorted(self._files_on_disk(), key=lambda found: (found[0], found[2])):
            row_run = _row_run(*key)
            if (row_run, path.name) in known:
                continue
            source = self._sources.get(key)
            if copy.merged:
                continue  # put there by compaction, whose journal rows know it
            if path.stat().st_size != copy.end - copy.start or last_complete_offset(path) != copy.end - copy.start:
                logger.info("removing %s: a copy cut short by a crash (never pushed)", path)
                path.unlink()
            elif source is not None and copy.counter < source.next_counter:
                logger.warning("removing %s: the journal already has copy %d of %s", path, copy.counter, key[1])
                path.unlink()
            else:
                row_id = self.journal.add_sealed_segment(
                    row_run, path.name, repo_path(self.settings, key[0], copy.repo_name(key[1], self.run_id)),
                    copy.end - copy.start, file_sha256(path),
                )
                logger.info("adopted %s, a copy sealed just before a crash", path)
                self._remember(key, next(row for row in self.journal.pending_segments() if row.id == row_id))

    def _remember(self, key: tuple[str, str], row: SegmentRow) -> None:
        copy = CopyName.parse(row.name)
        source = self._sources.setdefault(key, _Source(*key))
        if copy is not None and not copy.merged and copy.counter >= source.next_counter:
            source.next_counter, source.offset = copy.counter + 1, copy.end
            source.last, source.tail = (copy.start, copy.end, row.sha256), None

    def _files_on_disk(self) -> list[tuple[tuple[str, str], Path, CopyName]]:
        found = []
        for dirpath, _, filenames in os.walk(self.root):
            relative = Path(dirpath).relative_to(self.root).as_posix()
            if relative == ".":
                continue
            run, _, source = relative.rpartition("/")
            for name in filenames:
                if (copy := CopyName.parse(name)) is not None:
                    found.append(((run, source), Path(dirpath, name), copy))
        return found

    # ---------------------------------------------------------------- copying

    @property
    def listings(self) -> int:
        """Directories listed so far to find the event files (for benchmarks and tests)."""
        return self._finder.listings

    def sources(self, *, full: bool = False) -> list[tuple[str, str]]:
        """`(run, name)` of every foreign event file in the logdir, in name order: files whose name contains
        `tfevents` except hf-summary's own segments, the journal's directory and nested logdirs that have a
        journal of their own. A directory is listed again only when it changed (`AssetTracker`), or with
        `full` (a final copy: whatever a filesystem's clock says)."""
        found = (relative.rpartition("/")[::2] for relative in self._finder.files(full=full))
        return sorted((run, name) for run, name in found if is_event_file(name) and parse_segment_sequence(name) is None)

    def copy_new_records(self, *, full: bool = False) -> list[int]:
        """Copy the new complete records of every foreign event file into one sealed segment per file that grew;
        returns the new segment ids. A file that cannot be read now (gone, permissions) is skipped and retried
        at the next call. `full` lists every directory again (see `sources`)."""
        added = []
        for key in self.sources(full=full):
            source = self._sources.setdefault(key, _Source(*key))
            try:
                row_id = self._copy(source)
            except FileNotFoundError:
                continue  # deleted since the listing
            except PermissionError as exc:
                logger.warning("cannot read %s: %s", self.journal.logdir / logdir_relative(*key), exc)
                continue
            if row_id is not None:
                added.append(row_id)
        return added

    def _copy(self, source: _Source) -> int | None:
        path = self.journal.logdir / logdir_relative(source.run, source.name)
        stat = os.stat(path)
        identity = (stat.st_dev, stat.st_ino)
        if (stat.st_size, identity) == (source.seen_size, source.identity):
            return None  # unchanged since the last look (say, a torn tail its dead writer left)
        if self._replaced(source, path, stat.st_size, identity):
            logger.warning("%s shrank, was replaced or rewritten; copying it again from its start", path)
            source.offset, source.last, source.tail = 0, None, None
        source.identity = identity
        end = last_complete_offset(path, source.offset)
        if end == source.offset:
            source.seen_size = stat.st_size
            if stat.st_size - end > _STUCK_WARN_BYTES and not source.stuck_warned:
                logger.warning("%s has %d bytes past offset %d but no complete record there: likely a corrupt "
                               "record, where every TensorBoard reader stops too; nothing after it is copied",
                               path, stat.st_size - end, end)
                source.stuck_warned = True
            return None
        copy = CopyName(source.next_counter, source.offset, end)
        target = self.root.joinpath(*filter(None, source.run.split("/")), source.name, copy.local_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # no row names a copy this far: left by a failed attempt, never pushed
        segment = Segment(target)
        try:
            for data in read_records(path, source.offset):
                segment.write_record(data)
                if segment.size >= end - source.offset:
                    break
                _fault("watch_during_copy")  # crash tests: a copy cut short
        except BaseException:
            segment.discard()
            raise
        sealed = segment.seal()
        if sealed.size != end - source.offset:  # the file changed under us: look again next time
            target.unlink()
            logger.warning("%s changed while it was copied; copying again at the next tick", path)
            return None
        _fault("watch_after_seal")
        row_id = self.journal.add_sealed_segment(
            _row_run(source.run, source.name), copy.local_name,
            repo_path(self.settings, source.run, copy.repo_name(source.name, self.run_id)), sealed.size, sealed.sha256,
        )
        source.offset, source.next_counter = end, copy.counter + 1
        source.last, source.tail = (copy.start, end, sealed.sha256), _read_tail(target, sealed.size)
        source.seen_size = stat.st_size  # only now: a copy that failed is tried again even if the file stays put
        return row_id

    def _replaced(self, source: _Source, path: Path, size: int, identity: tuple[int, int]) -> bool:
        """Whether the file no longer holds what was copied: it shrank, it is another file than the one last
        looked at, or the bytes just before the offset are not the end of its last copy (rewritten in place:
        tensorboardX truncates a same-second name, and the new file may outgrow the offset before we look).
        The local copies are gone once pushed, so the end of the last copy is kept in memory; a restarted
        watcher checks the whole last copy's range against its sha256 once, then keeps its end."""
        if source.offset == 0:
            return False
        if size < source.offset or (source.identity is not None and identity != source.identity):
            return True
        if source.last is None:
            return False
        if source.tail is None:
            start, end, sha256 = source.last
            if sha256 is not None and range_sha256(path, start, end) != sha256:
                return True
            source.tail = _read_tail(path, end, start)
        with open(path, "rb") as f:
            return os.pread(f.fileno(), len(source.tail), source.offset - len(source.tail)) != source.tail

    # ---------------------------------------------------------------- disk

    def remove_pushed(self) -> int:
        """Remove the local copies (and merged copies) that the Hub holds: the journal keeps their rows (where
        copying resumes), compaction reads their bytes from the foreign files, so the logdir holds each event
        once plus only what is not pushed yet. Returns how many were removed; one query of the committed rows
        (bounded by compaction) and one unlink per copy, once."""
        removed = 0
        committed = [row for row in self.journal.segments("committed") if _source_of(row) is not None]
        self._removed &= {row.id for row in committed}  # merged away: no longer committed rows
        # a merge committed but not applied yet: compaction still has to move it here (and needs it there to finish)
        unapplied = {compaction.segment_id for compaction in self.journal.compactions("committed")}
        for row in committed:
            if row.id in self._removed or row.id in unapplied:
                continue
            try:
                row.local_path(self.journal.logdir).unlink()
                removed += 1
            except FileNotFoundError:
                pass
            self._removed.add(row.id)
        return removed


def _row_run(run: str, source: str) -> str:
    """The `run` of a copy's segment row: its local directory, relative to the logdir."""
    return "/".join(part for part in (JOURNAL_DIR, WATCH_DIR, run, source) if part)


def _source_of(row: SegmentRow) -> tuple[str, str] | None:
    """`(run, source)` of a copy's segment row; `None` for other rows."""
    if not row.run.startswith(_COPY_PREFIX) or CopyName.parse(row.name) is None:
        return None
    run, _, source = row.run[len(_COPY_PREFIX):].rpartition("/")
    return run, source


def _read_tail(path: Path, end: int, start: int = 0) -> bytes:
    """The last bytes (up to `_TAIL_CHECK`) of `path`'s range `[start, end)`."""
    length = min(_TAIL_CHECK, end - start)
    with open(path, "rb") as f:
        return os.pread(f.fileno(), length, end - length)


def range_sha256(path: Path, start: int, end: int) -> str:
    """sha256 of bytes `[start, end)` of `path` (fewer if it is shorter)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        while start < end and (chunk := f.read(min(_READ_CHUNK, end - start))):
            digest.update(chunk)
            start += len(chunk)
    return digest.hexdigest()
