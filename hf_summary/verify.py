"""Read event files back with a raw record scan, to check what reached the Hub against what was logged.

TensorBoard's EventAccumulator samples by default and hides torn records; these read every record of every
`*tfevents*` file (`add_scalars`/`add_hparams` sub-runs included) and skip the journal's directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event

from hf_summary.segments import read_records

JOURNAL_DIR = ".hf_summary"


def iter_events(root: Path) -> Iterator[tuple[str, Event]]:
    """`(run dir relative to root, event)` for every complete record under `root`, file by file in name
    order (`""` is `root` itself)."""
    for path in sorted(Path(root).rglob("*tfevents*")):
        if JOURNAL_DIR in path.relative_to(root).parts or not path.is_file():
            continue
        run = path.parent.relative_to(root).as_posix()
        run = "" if run == "." else run
        for data in read_records(path):
            yield run, Event.FromString(data)


def event_keys(root: Path) -> set[tuple]:
    """Every summary value (and graph) under `root`, keyed on (run dir, tag, step, wall_time, digest of the
    value). Scalars are stored as float32, so keys compare exactly between a logdir and its Hub copy."""
    keys = set()
    for run, event in iter_events(root):
        for value in event.summary.value:
            digest = hashlib.sha1(value.SerializeToString(deterministic=True)).hexdigest()
            keys.add((run, value.tag, event.step, event.wall_time, digest))
        if event.HasField("graph_def"):
            keys.add((run, "__graph__", event.step, event.wall_time, hashlib.sha1(event.graph_def).hexdigest()))
    return keys


def count_events(root: Path) -> int:
    """How many summary events (`add_*` calls' records) the event files under `root` hold."""
    return sum(1 for _, event in iter_events(root) if event.HasField("summary"))
