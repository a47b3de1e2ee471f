"""`RunWriter`: tensorboardX's `FileWriter` surface for one run directory, writing through the owner's segments."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary

if TYPE_CHECKING:
    from hf_summary.writer.rolling import SegmentRolling


class RunWriter:
    """The tensorboardX `FileWriter` surface for one run directory, writing through the owner's segments (its
    `_write`)."""

    def __init__(self, owner: SegmentRolling, logdir: str, run: str):
        self._owner = owner
        self._logdir = logdir
        self._run = run
        self._default_metadata: dict = {}

    def get_logdir(self) -> str:
        return self._logdir

    def stamp(self, step: int | None, walltime: float | None) -> tuple[int | None, float]:
        """The step and wall time an event gets: the arguments, else `use_metadata`'s, else now."""
        if walltime is None:
            walltime = self._default_metadata.get("walltime") or time.time()
        if step is None:
            step = self._default_metadata.get("global_step")
        return (None if step is None else int(step)), walltime

    def add_event(self, event: Event, step: int | None = None, walltime: float | None = None) -> None:
        step, event.wall_time = self.stamp(step, walltime)
        if step is not None:
            event.step = step
        self._owner._write(self._run, event.SerializeToString())

    def add_summary(self, summary, global_step: int | None = None, walltime: float | None = None) -> None:
        if not isinstance(summary, Summary):  # torch.utils.tensorboard's own protos (Lightning's log_hyperparams)
            summary = Summary.FromString(summary.SerializeToString())
        self.add_event(Event(summary=summary), global_step, walltime)

    def add_graph(self, graph_profile, walltime: float | None = None) -> None:
        from tensorboardX.proto.event_pb2 import TaggedRunMetadata

        graph, stepstats = graph_profile
        self.add_event(Event(graph_def=graph.SerializeToString()), None, walltime)
        run_metadata = TaggedRunMetadata(tag="profiler", run_metadata=stepstats.SerializeToString())
        self.add_event(Event(tagged_run_metadata=run_metadata), None, walltime)

    def add_onnx_graph(self, graph, walltime: float | None = None) -> None:
        self.add_event(Event(graph_def=graph.SerializeToString()), None, walltime)

    add_openvino_graph = add_onnx_graph

    def flush(self) -> None:
        """Nothing waits in user space; the owner's `flush()` fsyncs."""

    def close(self) -> None:
        """Segments are sealed by the owner, all runs at once."""

    def reopen(self) -> None:
        """Nothing to reopen: the next event starts a new segment."""

    @contextlib.contextmanager
    def use_metadata(self, *, global_step: int | None = None, walltime: float | None = None) -> Iterator[RunWriter]:
        if self._default_metadata:
            raise RuntimeError("Default metadata is already set.")
        if global_step is None and walltime is None:
            raise ValueError("At least one of `global_step` or `walltime` must be provided.")
        self._default_metadata = {"global_step": global_step, "walltime": walltime}
        try:
            yield self
        finally:
            self._default_metadata = {}
