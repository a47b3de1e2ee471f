"""The harness of `scripts/bench.py` and the benchmarks built on it: trainer processes (`bench_workers.py`)
watched and ended by PID, the bench's context (profile, local Hubs, temp dir, errors), interleaved rounds, and
the facts of the machine a run was on."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from bench_workers import WRITERS

from benchkit.stats import divide, median
from benchkit.trainer import trainer_env
from hf_summary.localhub.testing import LocalHub

SCRIPTS = Path(__file__).resolve().parent.parent
REPO_ROOT = SCRIPTS.parent
WORKERS_PY = SCRIPTS / "bench_workers.py"
SHORT = {"none": "none", "tensorboardX": "tbx", "huggingface_hub": "hfh", "ours": "ours", "torch": "torch"}
HUB_WRITERS = ("huggingface_hub", "ours")
POLL_S = 0.1
STEP_TARGET_S = 0.005


class BenchError(RuntimeError):
    """A run did not go as planned (a worker died, timed out or said something unexpected)."""


# ---------------------------------------------------------------- machine facts


def machine_facts() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    packages = ("hf-summary", "tensorboardX", "huggingface_hub", "hf-xet", "numpy", "protobuf", "psutil", "torch")
    for package in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# ---------------------------------------------------------------- processes


class Reaper:
    """Every process the bench started or saw under a worker, by PID and create time; ends the live ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: dict[tuple[int, float], psutil.Process] = {}

    def track(self, process: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error), self._lock:
            self._processes.setdefault((process.pid, process.create_time()), process)

    def alive(self, processes: list[psutil.Process]) -> list[psutil.Process]:
        return [p for p in processes if _running(p)]

    def kill(self, processes: list[psutil.Process] | None = None) -> None:
        """SIGKILL each (default: every tracked) process still running, and reap it."""
        with self._lock:
            targets = list(self._processes.values()) if processes is None else processes
        for process in targets:
            if _running(process):
                with contextlib.suppress(psutil.Error):
                    process.kill()
                    process.wait(10)


def _running(process: psutil.Process) -> bool:
    """Running and not a zombie; `is_running` also checks the create time, so a reused PID is not ours."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set of a live process (VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Worker:
    """One trainer process (`bench_workers.py`): JSON lines in, commands out, descendants watched."""

    def __init__(self, config: dict, env: dict[str, str], reaper: Reaper, log_dir: Path) -> None:
        self.config = config
        self.reaper = reaper
        self.stderr_path = log_dir / f"{config['scenario']}-{SHORT[config['writer']]}-{uuid.uuid4().hex[:6]}.log"
        with open(self.stderr_path, "wb") as stderr:
            # Own session: a Ctrl-C on the terminal reaches the bench, which ends the worker tree by PID.
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKERS_PY), json.dumps(config)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, env=env, text=True, start_new_session=True,
            )
        self.process = psutil.Process(self.proc.pid)
        reaper.track(self.process)
        self.descendants: list[psutil.Process] = []
        self.descendant_peak_mb: float | None = None
        self.last_step = -1
        self._messages: queue.Queue[dict | None] = queue.Queue()
        self._stop_watching = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                message = json.loads(line)
                if message.get("msg") == "step":
                    self.last_step = message["step"]
                else:
                    self._messages.put(message)
        self._messages.put(None)

    def _watch(self) -> None:
        """Track the worker's descendants (the uploader) for clean-up and their peak RSS, until finished."""
        while True:
            with contextlib.suppress(psutil.Error):
                if _running(self.process):
                    for child in self.process.children(recursive=True):
                        if all(child.pid != known.pid for known in self.descendants):
                            self.descendants.append(child)
                            self.reaper.track(child)
            for child in self.descendants:
                peak = _vm_hwm_mb(child.pid) if _running(child) else None
                if peak is not None:
                    self.descendant_peak_mb = max(self.descendant_peak_mb or 0.0, peak)
            if self._stop_watching.wait(0.05):
                return

    def expect(self, name: str, timeout: float) -> dict:
        """The next message called `name` (others are skipped); BenchError on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no {name!r} from {self} within {timeout:.0f} s{self.stderr_tail()}") from None
            if message is None:
                raise BenchError(f"{self} ended before {name!r} (status {self.proc.poll()}){self.stderr_tail()}")
            if message.get("msg") == name:
                return message

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()

    def kill(self) -> tuple[float, float]:
        """SIGKILL the trainer alone (its uploader lives on), by its PID; returns when (monotonic, wall clock)."""
        killed_at = (time.monotonic(), time.time())
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(10)
        return killed_at

    def alive(self) -> list[psutil.Process]:
        """The worker and the processes of its run still running: its tracked descendants, and any process
        whose command line names its logdir (an uploader spawned just before a kill may not have been seen
        as a descendant before its parent died)."""
        logdir = self.config.get("logdir")
        named = []
        for process in psutil.process_iter(["cmdline"]):
            if logdir and logdir in (process.info["cmdline"] or []):
                self.reaper.track(process)
                named.append(process)
        known = {p.pid for p in (self.process, *self.descendants)}
        return self.reaper.alive([self.process, *self.descendants, *(p for p in named if p.pid not in known)])

    def finish(self, timeout: float = 120.0) -> None:
        """Wait (bounded) for the worker and its descendants to exit; SIGKILL what is left."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()
        while self.alive() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        leftovers = self.alive()
        self.reaper.kill(leftovers)
        self.proc.wait()
        self._stop_watching.set()
        self._watcher.join(5)
        self._reader.join(5)
        if leftovers:
            print(f"  warning: {self} left {len(leftovers)} process(es) running after {timeout:.0f} s; killed",
                  file=sys.stderr)

    def stderr_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.stderr_path.read_text(errors="replace").strip().splitlines()
            if text:
                return "\n  stderr: " + "\n  stderr: ".join(text[-lines:])
        return ""

    def __str__(self) -> str:
        return f"worker {self.config['scenario']}/{self.config['writer']} (pid {self.proc.pid})"


# ---------------------------------------------------------------- the bench's context


class Bench:
    """Shared state of one run: the profile, the local Hubs, a temp dir, the reaper, errors seen so far."""

    def __init__(self, profile: Any, stack: contextlib.ExitStack, seed: int) -> None:
        self.profile = profile
        self.stack = stack
        self.tmp = Path(tempfile.mkdtemp(prefix="hf-summary-bench-"))
        stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        self.reaper = Reaper()
        self._hubs: dict[bool, LocalHub] = {}
        stack.callback(self.reaper.kill)
        self.rng = random.Random(seed)
        self.errors: dict[str, list[str]] = {}
        self.raw: dict[str, dict[str, list[dict]]] = {}
        self.reps = 20
        self.matrix_size = 128
        self._runs = 0
        self.started = time.monotonic()

    def hub(self, lfs: bool = True) -> LocalHub:
        """The local Hub in LFS (default) or regular mode, started on first use."""
        if lfs not in self._hubs:
            hub = LocalHub(regular=not lfs)
            self.stack.enter_context(hub)  # stopped by its own PID on the way out
            self.stack.callback(self.reaper.kill)  # LIFO: workers and uploaders end before this Hub stops
            self._hubs[lfs] = hub
        return self._hubs[lfs]

    def env(self, hub: LocalHub, endpoint: str | None = None) -> dict[str, str]:
        """A worker's environment (`trainer_env`): the Hub to use, a private HF_HOME, one BLAS/OpenMP
        thread."""
        return {
            **trainer_env(hub),
            "HF_ENDPOINT": endpoint or hub.endpoint,
            "HF_HOME": str(self.tmp / "hf_home"),
            "HF_HUB_DISABLE_EXPERIMENTAL_WARNING": "1",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }

    @contextlib.contextmanager
    def worker(self, scenario: str, writer: str, *, lfs: bool = True, endpoint: str | None = None,
               finish_timeout: float = 120.0, **params: Any) -> Iterator[Worker]:
        """A worker for one run; on the way out it is waited for (bounded), or killed at once on an error."""
        self._runs += 1
        name = f"{scenario.replace('_', '-')}-{SHORT[writer]}-{self._runs}"
        hub = self.hub(lfs)
        config = {
            "scenario": scenario, "writer": writer, "logdir": str(self.tmp / "logs" / name),
            "repo_id": f"alice/bench-{name}-{uuid.uuid4().hex[:6]}", "matrix_size": self.matrix_size, **params,
        }
        (self.tmp / "worker-logs").mkdir(exist_ok=True)
        process = Worker(config, self.env(hub, endpoint), self.reaper, self.tmp / "worker-logs")
        try:
            yield process
        except BaseException:
            process.finish(timeout=0)
            raise
        process.finish(timeout=finish_timeout)

    def attempt(self, scenario: str, writer: str, run: Callable[[], dict]) -> dict | None:
        """`run()`, or None when it failed (the error is kept for the report and printed)."""
        try:
            return run()
        except BenchError as exc:
            self.errors.setdefault(scenario, []).append(f"{writer}: {exc}")
            print(f"  {scenario}/{writer} failed: {exc}", file=sys.stderr)
            return None

    def calibrate(self) -> None:
        """Size the training step to ~5 ms on this machine (once, in a worker)."""
        with self.worker("calibrate", "none") as process:
            seconds_per_rep = process.expect("calibrated", 120)["seconds_per_rep"]
        self.reps = max(1, round(STEP_TARGET_S / seconds_per_rep))




def interleaved(bench: Bench, scenario: str, writers: tuple[str, ...], rounds: int,
                 run: Callable[[Bench, str], dict]) -> dict[str, list[dict]]:
    """`run(bench, writer)` for A B C, B C A, C A B, ... over `rounds` (each round starts one writer later,
    so that no writer always runs first or right after the same one); each writer's successful results, also
    kept in `bench.raw` for the JSON."""
    samples: dict[str, list[dict]] = {writer: [] for writer in writers}  # writer or variant ("ours/down")
    bench.raw[scenario] = samples
    for round_number in range(rounds):
        shift = round_number % len(writers)
        for writer in writers[shift:] + writers[:shift]:
            elapsed = time.monotonic() - bench.started
            print(f"  [{elapsed:5.0f} s] {scenario}: round {round_number + 1}/{rounds}, {writer}", file=sys.stderr,
                  flush=True)
            result = bench.attempt(scenario, writer, lambda w=writer: run(bench, w))
            if result is not None:
                samples[writer].append({**result, "round": round_number})
    return samples



def per_writer(samples: dict[str, list[dict]], figure: Callable[[dict], Any],
               reduce: Callable[[list[Any]], Any] = median) -> dict[str, Any]:
    """`{writer: reduce(figure(sample) for each round)}` for the three writers (None where none ran)."""
    return {writer: reduce([figure(s) for s in samples.get(writer, [])]) for writer in WRITERS}


def ratios(figures: dict[str, dict], key: str, label: str) -> dict[str, float | None]:
    values = figures[key]
    return {
        f"ratio_{label}_ours_vs_tensorboardX": divide(values["ours"], values["tensorboardX"]),
        f"ratio_{label}_ours_vs_huggingface_hub": divide(values["ours"], values["huggingface_hub"]),
    }


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = POLL_S) -> bool:
    """Poll `predicate` until truthy (True) or `timeout` s passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True

