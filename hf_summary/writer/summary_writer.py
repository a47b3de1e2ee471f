"""`HFSummaryWriter`: a tensorboardX `SummaryWriter` whose logs reach the Hub, whatever happens to the job.

This module holds the class, its constructor and its tensorboardX surface (`add_*`); the rest of the writer is
mixed in from the other modules of `hf_summary.writer`, one job each."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import numpy as np
import psutil
from tensorboardX import SummaryWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.summary import hparams, scalar
from tensorboardX.writer import DummyFileWriter
from tensorboardX.x2num import make_np

from hf_summary import hub
from hf_summary._events import ScalarEncoder
from hf_summary._summaries import tensor_scalar, tensor_summary, with_discrete_domains
from hf_summary._tensors import hparam_value, numpy_arguments, scalar_number, tensor_array
from hf_summary.backlog import DEFAULT_LIMIT_BYTES
from hf_summary.writer.held import HeldEvents
from hf_summary.writer.lifecycle import Lifecycle
from hf_summary.writer.recovery import LogdirRecovery
from hf_summary.writer.rolling import SegmentRolling
from hf_summary.writer.run_writer import RunWriter
from hf_summary.writer.startup import (
    check_arguments,
    check_existing_run,
    check_repo_access,
    default_commit_every,
    prepare_logdir,
    resolve_logdir,
    run_settings,
)
from hf_summary.writer.ticker import Ticker

logger = logging.getLogger("hf_summary")

_PLAIN_NUMBERS = (float, int)
_time = time.time


class HFSummaryWriter(Lifecycle, Ticker, LogdirRecovery, HeldEvents, SegmentRolling, SummaryWriter):
    """A drop-in `SummaryWriter` that pushes its event files to a Hub repo in the background.

    Each `add_*` call hands its whole event to the OS with one `write(2)` before returning, so a crash of
    the training process loses nothing that was logged. Every `commit_every` minutes the open event files
    ("segments") are sealed and recorded in an SQLite journal in the logdir; a separate uploader process
    pushes them in one commit and survives the trainer: if the trainer dies, the uploader seals what was
    left open and pushes it. `hf-summary recover LOGDIR` finishes the job if both died.

    Args:
        repo_id: the repo to push to (`"username/my-run"`); created if missing.
        logdir: where event files are written (default: `runs/DATE_HOST`, as tensorboardX).
        commit_every: minutes between two pushes (default 5 for repos, whose commits the Hub rate-limits, and 1
            for buckets, which have no commit budget).
        squash_history: squash the branch's history into one commit after each push (not for buckets).
        repo_type, repo_revision, repo_private: the repo's type, branch and (new repos only) visibility.
            `repo_type="bucket"` pushes to a Storage Bucket `repo_id` instead: no commits, no branch, no card.
        path_in_repo: folder in the repo; the logdir's name is appended (default `tensorboard`).
        repo_allow_patterns, repo_ignore_patterns: glob patterns on paths relative to the logdir.
        token: Hub token (default: `HF_TOKEN` or the stored login). Never written anywhere.
        close_timeout: seconds `close()`/`__exit__` wait for the final push (default 120). If the Hub is
            still unreachable then, the uploader keeps trying in the background for up to `drain_timeout`.
        drain_timeout: seconds the uploader keeps pushing after the trainer closed or died (default 600).
        handle_sigterm: install a SIGTERM handler that seals and asks for an urgent push, then chains at once
            to a previous Python handler, or, when the signal's default action would end the process, first
            waits (up to `grace_period`) until the Hub holds what was logged (default True; only possible
            from the main thread). With or without it, the uploader turns its own SIGTERM (a job-wide signal)
            into an urgent final push and asks this process to seal.
        grace_period: seconds a stop may spend on the final push: the trainer's wait on its way out (SIGTERM,
            interpreter exit without `close()`) and the uploader's final drain after a stop signal
            (default `HF_SUMMARY_GRACE_PERIOD`, else 8: inside `docker stop`'s 10 s). Set it a little
            below the time your scheduler leaves between SIGTERM and SIGKILL.
        held_events_limit: bytes of events kept in memory while the logdir's filesystem refuses writes (full,
            over quota, I/O errors, removed; default 32 MiB). They are written out, in order, once it takes
            them again; events past the limit are dropped and counted (the oldest are kept). `add_*` never
            raises for such an error; a warning says when it starts and ends, and `hf-summary status` shows it.
        existing_run: what to do when the repo folder already holds event files of another run (a
            requeued job on a new node, whose fresh logdir has the same name; or another experiment):
            `"continue"` (default) logs on into it as the same TensorBoard run, after a warning;
            `"error"` refuses to start. No run ever replaces a file of another either way.
        offline: log and journal as usual but never touch the network: no repo check, no uploader, and
            `close()` returns at once; `hf-summary sync LOGDIR` pushes the run later from a connected
            machine. Also on whenever huggingface_hub is in offline mode (`HF_HUB_OFFLINE`, read when
            huggingface_hub is imported), since it would refuse every request anyway.
        **kwargs: passed to tensorboardX's `SummaryWriter` (`comment`, `purge_step`,
            `filename_suffix`, ...; `max_queue` and `flush_secs` are accepted and have nothing to do:
            there is no queue and no buffer).

    Example:
        ```py
        >>> from hf_summary import HFSummaryWriter
        >>> with HFSummaryWriter(repo_id="username/my-run", commit_every=1) as writer:
        ...     for step in range(100):
        ...         writer.add_scalar("loss", 1 / (step + 1), step)
        ```
    """

    _CLEAN_TAGS = True  # tensorboardX cleans tags; torch's flavour keeps them as given

    def __init__(
        self,
        repo_id: str,
        *,
        logdir: str | os.PathLike[str] | None = None,
        commit_every: int | float | None = None,
        squash_history: bool = False,
        repo_type: str | None = None,
        repo_revision: str | None = None,
        repo_private: bool | None = None,
        path_in_repo: str | None = "tensorboard",
        repo_allow_patterns: list[str] | str | None = "*.tfevents.*",
        repo_ignore_patterns: list[str] | str | None = None,
        token: str | None = None,
        close_timeout: float = 120.0,
        drain_timeout: float = 600.0,
        handle_sigterm: bool = True,
        grace_period: float | None = None,
        existing_run: str = "continue",
        offline: bool = False,
        held_events_limit: int = DEFAULT_LIMIT_BYTES,
        **kwargs,
    ):
        if commit_every is None:
            commit_every = default_commit_every(repo_type)
        check_arguments(
            repo_id, commit_every=commit_every, repo_type=repo_type, repo_revision=repo_revision,
            repo_private=repo_private, squash_history=squash_history, token=token, close_timeout=close_timeout,
            drain_timeout=drain_timeout, existing_run=existing_run, held_events_limit=held_events_limit,
        )
        resolved_logdir = resolve_logdir(logdir, kwargs)
        self._init_lifecycle(
            token=token, close_timeout=close_timeout, drain_timeout=drain_timeout, handle_sigterm=handle_sigterm,
            grace_period=grace_period, offline=bool(offline) or hub.offline_mode(),
        )
        self._existing_run = existing_run
        self._settings = run_settings(
            repo_id, resolved_logdir, commit_every=commit_every, repo_type=repo_type, repo_revision=repo_revision,
            repo_private=repo_private, path_in_repo=path_in_repo, allow_patterns=repo_allow_patterns,
            ignore_patterns=repo_ignore_patterns, squash_history=squash_history,
        )
        self._logdir_path = resolved_logdir.resolve()
        self._host = socket.gethostname()
        self._create_time = psutil.Process().create_time()
        self._init_rolling()
        self._init_held(held_events_limit)
        self._scalar_encoder = ScalarEncoder(clean_tags=self._CLEAN_TAGS)  # add_scalar's lean path
        comet_config = kwargs.get("comet_config", {"disabled": True})  # tensorboardX's default: its logger is a no-op
        self._comet_on = not (isinstance(comet_config, dict) and comet_config.get("disabled") is True)
        self.repo_id = self._settings.repo_id
        self.repo_type = self._settings.repo_type
        self.repo_revision = self._settings.revision
        if not kwargs.get("write_to_disk", True):  # tensorboardX's dry run: create nothing, send nothing
            super().__init__(logdir=str(resolved_logdir), **kwargs)
            return
        self._start(resolved_logdir, kwargs)

    def _start(self, logdir: Path, kwargs: dict) -> None:
        """Make the logdir and its journal, check the repo, then start tensorboardX's side and ours."""
        prepare_logdir(logdir)
        self._open_journal()
        try:
            if self._offline:
                logger.warning(
                    "hf-summary is offline (HF_HUB_OFFLINE or offline=True): %s is logged and journaled here and "
                    "nothing is pushed; push it later from a connected machine with `hf-summary sync %s`",
                    logdir, logdir,
                )
            else:
                remote = check_repo_access(self._settings, self._token)
                if remote is not None:
                    check_existing_run(self._journal, self._settings, self._run_id, self._existing_run, remote)
            super().__init__(logdir=str(logdir), **kwargs)
            self._start_background()
        except BaseException:
            self._presence.stop()
            self._journal.close()
            raise

    # ---------------------------------------------------------------- the FileWriter seam

    def _get_file_writer(self) -> RunWriter | DummyFileWriter:
        """tensorboardX's hook for the default writer: ours writes segments (and reopens after close())."""
        if not self._write_to_disk:
            return super()._get_file_writer()
        if self._closed and self._ticker is not None:
            self._reopen()
        if self.all_writers is None or self.file_writer is None:
            self.file_writer = self._run_writer(self.logdir)
            if self.purge_step is not None:
                self.file_writer.add_event(Event(step=self.purge_step, file_version="brain.Event:2"))
                self.file_writer.add_event(Event(step=self.purge_step, session_log=_session_start()))
                self.purge_step = None  # once per writer, not once per segment
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
        return self.file_writer

    def _run_writer(self, run_logdir: str) -> RunWriter | DummyFileWriter:
        writers = self.all_writers if self.all_writers is not None else {}
        existing = writers.get(run_logdir)
        if isinstance(existing, (RunWriter, DummyFileWriter)):
            return existing
        if not self._write_to_disk:
            return DummyFileWriter(run_logdir)
        run = Path(run_logdir).resolve().relative_to(self._logdir_path).as_posix()
        return RunWriter(self, run_logdir, "" if run == "." else run)

    # ---------------------------------------------------------------- the SummaryWriter surface

    @property
    def log_dir(self) -> str:
        """torch.utils.tensorboard's name for `logdir`."""
        return self.logdir

    def get_logdir(self) -> str:
        return self.logdir

    @property
    def max_queue(self) -> int:
        return self._max_queue

    @property
    def flush_secs(self) -> int:
        return self._flush_secs

    @property
    def filename_suffix(self) -> str:
        return self._filename_suffix

    def add_scalar(
        self,
        tag: str,
        scalar_value,
        global_step: int | None = None,
        walltime: float | None = None,
        display_name: str = "",
        summary_description: str = "",
        *,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """tensorboardX's `add_scalar`, plus torch's `new_style` tensor scalars (`double_precision` applies
        to those only, as in torch: without `new_style` the value is a float32 `simple_value`). Takes what
        torch's takes: a number, a numpy scalar or array, a tensor of any dtype, `bfloat16` included."""
        value = scalar_value if type(scalar_value) in _PLAIN_NUMBERS else scalar_number(scalar_value)
        if not (new_style or display_name or summary_description) and self._add_lean_scalar(
            self.file_writer, tag, value, global_step, walltime
        ):
            if self._comet_on:
                self._get_comet_logger().log_metric(tag, "", scalar_value, global_step)
            return
        if new_style:
            self._get_file_writer().add_summary(tensor_scalar(tag, value, double_precision), global_step, walltime)
            return
        self._add_simple_scalar(tag, value, global_step, walltime, display_name, summary_description)

    def _add_simple_scalar(self, tag: str, value, global_step, walltime, display_name: str, description: str) -> None:
        """A `simple_value` scalar the lean path left (a NaN, a display name...), `value` converted by
        `scalar_number`."""
        SummaryWriter.add_scalar(self, tag, value, global_step, walltime, display_name, description)

    def _add_lean_scalar(self, writer: object, tag: str, value, step, walltime) -> bool:
        """`add_scalar`'s hot path into `writer` (a run dir's): a Python float/int (numpy and torch scalars
        are made one by `scalar_number` first), its Event encoded directly (the same bytes protobuf writes)
        and written. Returns False, having done nothing, for anything else."""
        if (
            type(value) not in _PLAIN_NUMBERS
            or (step is not None and type(step) is not int)
            or type(writer) is not RunWriter  # tensorboardX's dry run
            or self._closed  # the slow path reopens
        ):
            return False
        if writer._default_metadata:
            step, walltime = writer.stamp(step, walltime)
        elif walltime is None:
            walltime = _time()
        data = self._scalar_encoder.encode(tag, value, step, walltime)
        if data is None:
            return False
        self._write(writer._run, data)
        return True

    # tensorboardX's, taking torch tensors of any dtype (its own conversion has no bfloat16)
    add_histogram = numpy_arguments(SummaryWriter.add_histogram)
    add_histogram_raw = numpy_arguments(SummaryWriter.add_histogram_raw)
    add_image = numpy_arguments(SummaryWriter.add_image)
    add_images = numpy_arguments(SummaryWriter.add_images)
    add_image_with_boxes = numpy_arguments(SummaryWriter.add_image_with_boxes)
    add_video = numpy_arguments(SummaryWriter.add_video)
    add_embedding = numpy_arguments(SummaryWriter.add_embedding, keep=("metadata",))
    add_pr_curve = numpy_arguments(SummaryWriter.add_pr_curve)
    add_pr_curve_raw = numpy_arguments(SummaryWriter.add_pr_curve_raw)
    add_mesh = numpy_arguments(SummaryWriter.add_mesh)

    @numpy_arguments
    def add_audio(self, tag: str, snd_tensor, *args, **kwargs) -> None:
        """tensorboardX's `add_audio`, taking `float16` (and `bfloat16`) sound too, as `float32`, which
        holds it exactly (tensorboardX's WAV encoder has no `float16`)."""
        if getattr(snd_tensor, "dtype", None) == np.float16:
            snd_tensor = snd_tensor.astype(np.float32)
        SummaryWriter.add_audio(self, tag, snd_tensor, *args, **kwargs)

    def add_tensor(self, tag: str, tensor, global_step: int | None = None, walltime: float | None = None) -> None:
        """torch's `add_tensor`: a tensor (or numpy array) of any dtype torch's takes, as a TensorProto."""
        self._get_file_writer().add_summary(tensor_summary(tag, *tensor_array(tensor)), global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step=None, walltime=None) -> None:
        """Each tag goes to its own sub-run `logdir/main_tag/tag`, which rolls like the main run. As in
        tensorboardX, the values are also kept in `scalar_dict` for `export_scalars_to_json`, as
        `(walltime, step, value)` tuples (the garbage collector stops tracking those; lists would make its
        full collections ever longer in a long run)."""
        walltime = _time() if walltime is None else walltime
        fw_logdir = str(self._get_file_writer().get_logdir())
        for tag, scalar_value in tag_scalar_dict.items():
            value = scalar_number(scalar_value)
            run_logdir = os.path.join(fw_logdir, main_tag, tag)
            writer = self._sub_run_writer(run_logdir)
            if not self._add_lean_scalar(writer, main_tag, value, global_step, walltime):
                writer.add_summary(scalar(main_tag, value), global_step, walltime)
            kept = float(value) if type(value) in _PLAIN_NUMBERS else float(make_np(value).squeeze())
            self.scalar_dict.setdefault(run_logdir, []).append((walltime, global_step, kept))
        if self._comet_on:
            self._get_comet_logger().log_metrics(tag_scalar_dict, main_tag, step=global_step)

    def _sub_run_writer(self, run_logdir: str) -> RunWriter | DummyFileWriter:
        """The writer of the sub-run `run_logdir` of `add_scalars`, made on first use."""
        writer = self.all_writers.get(run_logdir)
        if writer is None:
            writer = self.all_writers[run_logdir] = self._run_writer(run_logdir)
        return writer

    def add_hparams(
        self,
        hparam_dict: dict,
        metric_dict: dict,
        name: str | None = None,
        global_step: int | None = None,
        *,
        hparam_domain_discrete: dict | None = None,
        run_name: str | None = None,
    ) -> None:
        """tensorboardX's `add_hparams` (a sub-run `logdir/name`), plus torch's keyword arguments."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        hparam_dict = {key: hparam_value(value) for key, value in hparam_dict.items()}
        metric_dict = {key: scalar_number(value) for key, value in metric_dict.items()}
        experiment, start, end = hparams(hparam_dict, metric_dict)
        if hparam_domain_discrete:
            experiment = with_discrete_domains(experiment, hparam_domain_discrete)
        sub_run = os.path.join(self._get_file_writer().get_logdir(), run_name or name or str(time.time()))
        writer = self.all_writers.setdefault(sub_run, self._run_writer(sub_run))
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        for key, value in metric_dict.items():
            writer.add_summary(scalar(key, value), global_step)
        self._get_comet_logger().log_parameters(hparam_dict, step=global_step)


def _session_start():
    from tensorboardX.proto.event_pb2 import SessionLog

    return SessionLog(status=SessionLog.START)
