"""Preemption: how real jobs end. A job-wide SIGTERM (SLURM, systemd: every process of the job), a container
stop (a forwarding init; the kernel SIGKILLs the namespace when PID 1 exits), a trainer that is PID 1, and
the Hub slow or down at that moment; each with a SIGKILL 10 s after the SIGTERM, as the schedulers do.

Every test checks the exact set of logged events on the Hub (what reached the OS, read back from the logdir)
and that no process is left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest
from helpers import hub_events, uploader_processes, wait_until
from trainer_kit import Trainer, cli, hub_env, pid_gone

from hf_summary.journal import Journal
from hf_summary.localhub.testing import LocalHub
from hf_summary.verify import event_keys

KILL_AFTER_S = 10.0  # docker stop's default, and a common SLURM KillWait

# Logs a step every few ms until SIGTERM, at the default commit_every (nothing is pushed before the stop).
# USER_HANDLER: "none"; "before"/"after" installs a checkpoint handler before/after the writer's, which
# keeps training for 3 s, logs a "checkpoint_saved" scalar and exits. HANDLE_SIGTERM=0: handle_sigterm=False;
# WRITER_THREAD=1: the writer is made outside the main thread. REPO_TYPE=bucket: push to a Storage Bucket.
PREEMPTED_TRAINER = """
    import json, os, signal, sys, threading, time
    from hf_summary import HFSummaryWriter

    stop = threading.Event()
    mode = os.environ.get("USER_HANDLER", "none")

    def checkpoint_handler(signum, frame):
        stop.set()

    if mode == "before":
        signal.signal(signal.SIGTERM, checkpoint_handler)

    def make_writer():
        return HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"],
                               repo_type=os.environ.get("REPO_TYPE") or None,
                               handle_sigterm=os.environ.get("HANDLE_SIGTERM", "1") == "1")

    if os.environ.get("WRITER_THREAD") == "1":  # no signal handler can be installed there
        made = []
        maker = threading.Thread(target=lambda: made.append(make_writer()))
        maker.start()
        maker.join()
        writer = made[0]
    else:
        writer = make_writer()
    if mode == "after":
        signal.signal(signal.SIGTERM, checkpoint_handler)

    def say(event, **fields):
        print(json.dumps({"event": event, **fields}), flush=True)

    step = 0
    def log_one(tag="loss"):
        global step
        writer.add_scalar(tag, step * 0.5, step)
        say("step", step=step)
        step += 1
        time.sleep(0.004)

    log_one()
    say("ready", pid=os.getpid())
    while not stop.is_set():
        log_one()
    until = time.monotonic() + 3
    while time.monotonic() < until:
        log_one()
    log_one("checkpoint_saved")
    say("checkpointed")
    sys.exit(0)
"""


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


needs_pid_namespaces = pytest.mark.skipif(
    not _unshare_works(), reason="PID namespaces are not available here (`unshare --pid --fork --mount-proc` failed)"
)


def _start(tmp_path, hub, repo_id, argv_prefix: tuple[str, ...] = (), **env: str) -> Trainer:
    trainer = Trainer(tmp_path / "logs", {**hub_env(hub), "REPO": repo_id, **env}, tmp_path,
                      script=PREEMPTED_TRAINER, argv_prefix=argv_prefix)
    trainer.expect("step", until=lambda m: m["step"] >= 50)
    wait_until(lambda: uploader_processes(trainer.logdir), 30, message="the uploader to start")
    return trainer


def _job_processes(trainer: Trainer) -> list[int]:
    """The trainer (and whatever runs it) and its uploader: what a scheduler's cgroup holds."""
    return [trainer.proc.pid, *(p.pid for p in uploader_processes(trainer.logdir))]


def _stop_like_a_scheduler(pids: list[int], trainer: Trainer, signal_to: list[int]) -> float | None:
    """SIGTERM ``signal_to``, then SIGKILL whatever of ``pids`` still runs after KILL_AFTER_S. Returns the
    seconds until all had exited, ``None`` when the SIGKILL was needed."""
    start = time.monotonic()
    for pid in signal_to:
        os.kill(pid, signal.SIGTERM)
    while time.monotonic() - start < KILL_AFTER_S:
        trainer.proc.poll()
        if all(pid_gone(pid) for pid in pids):
            return time.monotonic() - start
        time.sleep(0.02)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    trainer.sigkill()
    return None


def _assert_hub_holds_every_logged_event(hub, repo_id, tmp_path, trainer: Trainer, *, tags=("loss",),
                                         repo_type: str = "model") -> None:
    trainer.sigkill()
    wait_until(lambda: not uploader_processes(trainer.logdir), 15, message="every uploader to exit")
    logged = event_keys(trainer.logdir)
    steps = {key[2] for key in logged if key[1] == "loss"}
    assert set(range(trainer.acked + 1)) - steps <= {trainer.acked}, "the trainer acknowledged more than it logged"
    assert {key[1] for key in logged} >= set(tags)
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/logs", repo_type=repo_type) == logged


@pytest.mark.parametrize(
    "setup", [{}, {"HANDLE_SIGTERM": "0"}, {"WRITER_THREAD": "1"}, {"REPO_TYPE": "bucket"}],
    ids=["ours", "off", "thread", "bucket"],
)
def test_job_wide_sigterm_then_sigkill_loses_nothing(tmp_path, hub, repo_id, setup):
    with _start(tmp_path, hub, repo_id, **setup) as trainer:
        pids = _job_processes(trainer)
        took = _stop_like_a_scheduler(pids, trainer, signal_to=pids)
        assert took is not None, "the job was still running when the SIGKILL came"
        _assert_hub_holds_every_logged_event(hub, repo_id, tmp_path, trainer, repo_type=setup.get("REPO_TYPE", "model"))
    with Journal(trainer.logdir) as journal:
        preemption = journal.history("preemption", limit=1)[0]
        final = journal.history("final_push", limit=1)[0]
    assert preemption["signal"] in ("SIGTERM", "SIGTERM to the trainer")
    assert final["pending"] == 0 and final["last_commit"] is not None


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_checkpoint_handler_that_keeps_training_gets_its_events_pushed(tmp_path, hub, repo_id, where):
    """A user's SIGTERM handler (installed before ours: we chain to it at once; or after ours, replacing it,
    as Lightning and accelerate do) keeps training for 3 s and logs a last scalar."""
    with _start(tmp_path, hub, repo_id, USER_HANDLER=where) as trainer:
        pids = _job_processes(trainer)
        took = _stop_like_a_scheduler(pids, trainer, signal_to=pids)
        assert took is not None, "the job was still running when the SIGKILL came"
        # the handler's last scalar, logged after its 3 s of training, is on the Hub: the job was not cut short
        _assert_hub_holds_every_logged_event(hub, repo_id, tmp_path, trainer, tags=("loss", "checkpoint_saved"))


def test_status_after_a_preemption_with_the_hub_down(tmp_path, repo_id):
    """The Hub is down at the stop: both processes are gone before the SIGKILL, nothing is lost locally,
    `status` says so, and `recover` pushes it all once the Hub is back."""
    with LocalHub() as hub, _start(tmp_path, hub, repo_id) as trainer:
        hub.stop()
        pids = _job_processes(trainer)
        took = _stop_like_a_scheduler(pids, trainer, signal_to=pids)
        assert took is not None, "the job was still running when the SIGKILL came"
        trainer.sigkill()
        status = cli("status", str(trainer.logdir), env={})
        assert "Preempted:" in status.stdout and "SIGTERM" in status.stdout, status.stdout
        assert "ended with 1 segment(s) pending" in status.stdout, status.stdout
        assert f"hf-summary recover {trainer.logdir}" in status.stdout, status.stdout
        hub.start()
        result = cli("recover", str(trainer.logdir), env=hub_env(hub))
        assert result.returncode == 0, result.stdout + result.stderr
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/logs") == event_keys(trainer.logdir)


def test_a_slow_hub_still_gets_everything_within_the_grace(tmp_path, repo_id):
    """2 s of latency on every Hub API request, 10 s between SIGTERM and SIGKILL. The CAS (a service of its
    own on the Hub) is not slowed: a push through Xet makes 3 API round trips (pre-upload, Xet token, commit)
    but 8 in all, so 2 s on each would not fit in the grace."""
    with LocalHub() as hub, _start(tmp_path, hub, repo_id) as trainer:
        hub.set_faults([{"path": "^/(?!_localhub/cas/)", "delay_s": 2.0}])
        pids = _job_processes(trainer)
        took = _stop_like_a_scheduler(pids, trainer, signal_to=pids)
        hub.clear_faults()
        assert took is not None, "the job was still running when the SIGKILL came"
        _assert_hub_holds_every_logged_event(hub, repo_id, tmp_path, trainer)


@needs_pid_namespaces
@pytest.mark.parametrize("repo_type", ["model", "bucket"])
def test_container_stop_with_a_forwarding_init(tmp_path, hub, repo_id, repo_type):
    """`docker stop` with tini or a shell entrypoint: SIGTERM to PID 1, which forwards it to the trainer and
    exits when the trainer exits; then the kernel SIGKILLs everything else in the namespace."""
    init = 'python_pid=""; trap \'kill -TERM "$python_pid"\' TERM; "$@" & python_pid=$!; wait "$python_pid"; wait "$python_pid"'
    prefix = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", init, "init")
    with _start(tmp_path, hub, repo_id, argv_prefix=prefix, REPO_TYPE=repo_type) as trainer:
        init_process = psutil.Process(trainer.proc.pid).children()[0]
        pids = [trainer.proc.pid, init_process.pid, *(p.pid for p in init_process.children(recursive=True))]
        took = _stop_like_a_scheduler(pids, trainer, signal_to=[init_process.pid])
        assert took is not None, "the container was still running when the SIGKILL came"
        _assert_hub_holds_every_logged_event(hub, repo_id, tmp_path, trainer, repo_type=repo_type)


@needs_pid_namespaces
def test_trainer_as_pid_1_behaves_as_plain_python_and_its_events_reach_the_hub(tmp_path, hub, repo_id):
    """`CMD ["python", "train.py"]`: SIGTERM's default action is ignored for PID 1, so plain Python goes
    on until the SIGKILL; so does ours, after pushing what was logged."""
    prefix = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
    plain = subprocess.Popen([*prefix, "python3", "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert plain.stdout.readline() == "up\n"
        os.kill(psutil.Process(plain.pid).children()[0].pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            plain.wait(2)
    finally:
        plain.kill()
        plain.wait()
    with _start(tmp_path, hub, repo_id, argv_prefix=prefix) as trainer:
        python = psutil.Process(trainer.proc.pid).children()[0]
        python.send_signal(signal.SIGTERM)
        at_signal = trainer.acked
        logged_at_signal = {key for key in event_keys(trainer.logdir) if key[2] <= at_signal}
        wait_until(lambda: trainer.acked > at_signal + 100, 60, message="training to go on after SIGTERM")
        assert python.is_running()
        on_hub = wait_until(
            lambda: (found := hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/logs")) >= logged_at_signal
            and found,
            60, interval=0.5, message="the events logged before SIGTERM to reach the Hub",
        )
        assert on_hub <= event_keys(trainer.logdir)


def test_a_second_sigterm_ends_the_uploader_at_once(tmp_path, repo_id):
    """The Hub is down, so the final drain cannot finish: a second SIGTERM ends the uploader at once, and
    what is pending stays in the journal."""
    with LocalHub() as hub, _start(tmp_path, hub, repo_id) as trainer:
        hub.stop()
        (uploader,) = uploader_processes(trainer.logdir)
        trainer.sigkill()  # the trainer is gone: the uploader is in its final drain, retrying
        log = trainer.logdir / ".hf_summary" / "uploader.log"
        wait_until(lambda: log.exists() and "final drain" in log.read_text(), 60,
                   message="the uploader to start its final drain")
        uploader.send_signal(signal.SIGTERM)
        wait_until(lambda: "preempted (SIGTERM)" in log.read_text(), 30,
                   message="the uploader to take the first SIGTERM")
        assert uploader.is_running()
        uploader.send_signal(signal.SIGTERM)
        uploader.wait(2)  # not our child: psutil cannot tell its status, the log can
        assert "second SIGTERM: exiting now" in log.read_text()
        with Journal(trainer.logdir) as journal:
            assert journal.pending_segments()
