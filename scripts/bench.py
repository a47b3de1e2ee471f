"""Benchmark hf-summary's ``HFSummaryWriter`` against tensorboardX's ``SummaryWriter`` (local only) and
``huggingface_hub.HFSummaryWriter``, both Hub writers pushing to the project's local Hub.

Usage::

    python scripts/bench.py                  # full run, ~10-15 minutes on 2 cores
    python scripts/bench.py --quick          # smaller sizes, under 2 minutes
    python scripts/bench.py --smoke          # every scenario at minimal size (used by tests/test_bench_smoke.py)
    python scripts/bench.py --only logging_cost,startup_s --json results.json --markdown results.md

Scenarios (JSON keys): ``logging_cost``, ``interference``, ``amplification``, ``crash_loss``,
``time_to_hub_s``, ``startup_s``, ``memory_mb``. Every measurement runs in a fresh trainer process
(``scripts/bench_workers.py``) with ``HF_ENDPOINT``/``HF_TOKEN``/``HF_HUB_DISABLE_XET`` in its environment,
because huggingface_hub reads them at import time. Writers are interleaved (A B C, B C A, C A B,
...) over several rounds and the medians are reported (per-round figures are in the JSON's ``raw``). The
local Hub answers as the Hub does and the clients' Xet is off, so binary event files go up by basic LFS
(raw upload bytes; ``scripts/bench_xet.py`` measures the Xet path);
amplification is also measured in the regular-only mode (base64 commit bodies) in full runs.

Every process started here (local Hubs, trainers and their uploader children) is tracked by PID and create
time and ended by its own PID on exit, Ctrl-C or SIGTERM; temporary directories are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import psutil

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
WORKERS_PY = SCRIPTS / "bench_workers.py"
sys.path.insert(0, str(SCRIPTS))
# huggingface_hub (imported through hf_summary) reads these at import time; the bench only downloads with it.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench_workers import WRITERS  # noqa: E402

from hf_summary.localhub.testing import LocalHub  # noqa: E402

SCENARIOS = (
    "logging_cost", "interference", "amplification", "crash_loss", "time_to_hub_s", "startup_s", "memory_mb",
)
HUB_WRITERS = ("huggingface_hub", "ours")
SHORT = {"none": "none", "tensorboardX": "tbx", "huggingface_hub": "hfh", "ours": "ours"}
CRASH_WAIT_S = 30.0  # the spec: events must reach the Hub within 30 s of the kill, without a restart
POLL_S = 0.1
STEP_TARGET_S = 0.005


@dataclass(frozen=True)
class Profile:
    """Sizes of one run. ``full`` is the default; ``quick`` < 2 min; ``smoke`` is the test's minimal run."""

    name: str
    rounds: int = 3
    n_scalars: int = 50_000
    n_mixed: int = 1_000
    interference_rounds: int = 5
    interference_s: float = 8.0
    interference_baseline_s: float = 4.0  # before and again after the logged phase
    interference_warmup_steps: int = 200
    interference_commit_every: float = 0.05  # minutes
    interference_bandwidth_bps: int = 50_000
    histogram_every: int = 50
    amplification_rounds: int = 2
    amplification_commits: int = 30
    amplification_commit_every: float = 0.01  # minutes
    amplification_steps_per_s: float = 40.0
    amplification_regular_rounds: int = 1  # 0: skip the regular-mode (base64) measurement
    crash_rounds: int = 3
    crash_commit_every: float = 0.05
    crash_kill_window_s: tuple[float, float] = (3.0, 8.0)
    crash_quiet_s: float = 3.0  # no live process of the run and no new commit for this long: nothing more can come
    calibrate: bool = True  # size the training step to ~5 ms (smoke: a fixed, smaller step)
    startup_rounds: int = 5


PROFILES = {
    "full": Profile("full"),
    "quick": Profile(
        "quick", rounds=1, n_scalars=20_000, n_mixed=200, interference_rounds=1, interference_s=4.0,
        interference_baseline_s=1.5, interference_warmup_steps=50, interference_commit_every=0.04,
        amplification_rounds=1, amplification_commit_every=0.004, amplification_steps_per_s=60.0,
        amplification_regular_rounds=0,
        crash_rounds=1, crash_kill_window_s=(1.0, 2.5), startup_rounds=1,
    ),
    "smoke": Profile(
        "smoke", rounds=1, n_scalars=2_000, n_mixed=20, interference_rounds=1, interference_s=1.5,
        interference_baseline_s=0.5,
        interference_commit_every=0.01, interference_warmup_steps=20,
        amplification_rounds=1, amplification_commits=1, amplification_commit_every=0.004,
        amplification_regular_rounds=0, crash_rounds=1, crash_commit_every=0.01, crash_kill_window_s=(0.5, 1.0),
        crash_quiet_s=1.0, startup_rounds=1, calibrate=False,
    ),
}


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
    """Running and not a zombie; ``is_running`` also checks the create time, so a reused PID is not ours."""
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
    """One trainer process (``bench_workers.py``): JSON lines in, commands out, descendants watched."""

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
        """The next message called ``name`` (others are skipped); BenchError on EOF or timeout."""
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

    def __init__(self, profile: Profile, stack: contextlib.ExitStack, seed: int) -> None:
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
        """A worker's environment: the Hub to use, a private HF_HOME, one BLAS/OpenMP thread."""
        return {
            **os.environ,
            "HF_ENDPOINT": endpoint or hub.endpoint,
            "HF_TOKEN": hub.token(),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(self.tmp / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
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
        """``run()``, or None when it failed (the error is kept for the report and printed)."""
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


# ---------------------------------------------------------------- small helpers


def median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and v == v]
    return statistics.median(numbers) if numbers else None


def min_or_none(values: list[Any]) -> Any:
    numbers = [v for v in values if v is not None]
    return min(numbers) if numbers else None


def max_or_none(values: list[Any]) -> Any:
    numbers = [v for v in values if v is not None]
    return max(numbers) if numbers else None


def _interleaved(bench: Bench, scenario: str, writers: tuple[str, ...], rounds: int,
                 run: Callable[[Bench, str], dict]) -> dict[str, list[dict]]:
    """``run(bench, writer)`` for A B C, B C A, C A B, ... over ``rounds`` (each round starts one writer later,
    so that no writer always runs first or right after the same one); each writer's successful results, also
    kept in ``bench.raw`` for the JSON."""
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def divide(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def per_writer(samples: dict[str, list[dict]], figure: Callable[[dict], Any],
               reduce: Callable[[list[Any]], Any] = median) -> dict[str, Any]:
    """``{writer: reduce(figure(sample) for each round)}`` for the three writers (None where none ran)."""
    return {writer: reduce([figure(s) for s in samples.get(writer, [])]) for writer in WRITERS}


def ratios(figures: dict[str, dict], key: str, label: str) -> dict[str, float | None]:
    values = figures[key]
    return {
        f"ratio_{label}_ours_vs_tensorboardX": divide(values["ours"], values["tensorboardX"]),
        f"ratio_{label}_ours_vs_huggingface_hub": divide(values["ours"], values["huggingface_hub"]),
    }


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = POLL_S) -> bool:
    """Poll ``predicate`` until truthy (True) or ``timeout`` s passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def repo_commits(hub: LocalHub, repo_id: str) -> int:
    return hub.stats()["repos"].get(f"model/{repo_id}", {}).get("commits", 0)


def closed_port_endpoint() -> str:
    """An endpoint on a loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def scalar_steps(root: Path, tag: str = "loss") -> set[int]:
    """Steps of ``tag`` in every event file under ``root``: a raw record scan (no sampling)."""
    from tensorboardX.proto.event_pb2 import Event

    from hf_summary.segments import read_records

    steps = set()
    for path in root.rglob("*tfevents*"):
        if ".hf_summary" in path.parts or not path.is_file():
            continue
        for data in read_records(path):
            event = Event.FromString(data)
            if any(value.tag == tag for value in event.summary.value):
                steps.add(event.step)
    return steps


def hub_steps(hub: LocalHub, repo_id: str, dest: Path) -> set[int]:
    """Steps of ``loss`` in the repo's event files, downloaded with the real client into ``dest``."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    for name in api.list_repo_files(repo_id):
        if "tfevents" in name:
            api.hf_hub_download(repo_id, name, local_dir=dest)
    return scalar_steps(dest)


# ---------------------------------------------------------------- 1. logging cost


def _logging_run(bench: Bench, writer: str) -> dict:
    p = bench.profile
    with bench.worker("logging_cost", writer, n_scalars=p.n_scalars, n_mixed=p.n_mixed, commit_every=5) as process:
        return process.expect("result", 600)


def logging_cost(bench: Bench) -> dict:
    p = bench.profile
    samples = _interleaved(bench, "logging_cost", WRITERS, p.rounds, _logging_run)
    figures = {
        "scalar_events_per_s": per_writer(samples, lambda r: p.n_scalars / r["scalar_s"]),
        "scalar_events_per_s_incl_close": per_writer(
            samples, lambda r: p.n_scalars / (r["scalar_s"] + r["scalar_close_s"])),
        "mixed_steps_per_s": per_writer(samples, lambda r: p.n_mixed / r["mixed_s"]),
        "mixed_steps_per_s_incl_close": per_writer(
            samples, lambda r: p.n_mixed / (r["mixed_s"] + r["mixed_close_s"])),
        "user_space_buffered_bytes": per_writer(
            samples, lambda r: max(r["scalar_buffered_bytes"], r["mixed_buffered_bytes"]), max_or_none),
    }
    return {**figures, **ratios(figures, "scalar_events_per_s", "scalar"),
            **ratios(figures, "mixed_steps_per_s", "mixed"), "n_scalars": p.n_scalars, "n_mixed_steps": p.n_mixed}


# ---------------------------------------------------------------- 2. interference (and 7. memory)


def _interference_run(bench: Bench, writer: str) -> dict:
    """One run (see ``scenario_interference``): the Hub is throttled throughout; ``go`` once a Hub writer's
    first push landed."""
    p = bench.profile
    hub = bench.hub()
    with bench.worker(
        "interference", writer, finish_timeout=300, reps=bench.reps, duration_s=p.interference_s,
        baseline_s=p.interference_baseline_s, histogram_every=p.histogram_every,
        commit_every=p.interference_commit_every, warmup_steps=p.interference_warmup_steps,
    ) as process:
        repo_id = process.config["repo_id"]
        process.expect("ready", 120)
        hub.set_faults([], bandwidth_bps=p.interference_bandwidth_bps)
        try:
            process.expect("opened", p.interference_baseline_s + 120)
            start = repo_commits(hub, repo_id)
            if writer in HUB_WRITERS and not wait_until(lambda: repo_commits(hub, repo_id) > start, 120):
                raise BenchError(f"{process}: no push within 120 s{process.stderr_tail()}")
            process.send("go")
            process.expect("measuring", 120)
            before = repo_commits(hub, repo_id)
            process.expect("logged", p.interference_s + 120)
            commits = repo_commits(hub, repo_id) - before
        finally:
            hub.clear_faults()
        process.send("close")
        done = process.expect("done", p.interference_baseline_s + 600)
    logged, baseline = done["logged_ms"], done["before_ms"] + done["after_ms"]
    return {
        "p50": percentile(logged, 50), "p99": percentile(logged, 99), "max": max(logged), "steps": len(logged),
        "baseline_p50": percentile(baseline, 50), "baseline_p99": percentile(baseline, 99),
        "commits": commits if writer in HUB_WRITERS else None,
        "peak_rss_mb": done["peak_rss_with_mb"], "peak_rss_without_mb": done["peak_rss_without_mb"],
        "uploader_peak_rss_mb": process.descendant_peak_mb,
    }


def interference_and_memory(bench: Bench) -> tuple[dict, dict]:
    p = bench.profile
    samples = _interleaved(bench, "interference", WRITERS, p.interference_rounds, _interference_run)
    runs = [s for writer_runs in samples.values() for s in writer_runs]
    interference = {
        "baseline_step_ms_p50": median([s["baseline_p50"] for s in runs]),
        "baseline_step_ms_p99": median([s["baseline_p99"] for s in runs]),
        "step_ms_p50": per_writer(samples, lambda s: s["p50"]),
        "step_ms_p99": per_writer(samples, lambda s: s["p99"]),
        "step_ms_max": per_writer(samples, lambda s: s["max"], max_or_none),
        "ratio_p50_vs_no_logging": per_writer(samples, lambda s: s["p50"] / s["baseline_p50"]),
        "ratio_p50_vs_no_logging_max": per_writer(samples, lambda s: s["p50"] / s["baseline_p50"], max_or_none),
        "ratio_p99_vs_no_logging": per_writer(samples, lambda s: s["p99"] / s["baseline_p99"]),
        "steps": per_writer(samples, lambda s: s["steps"]),
        "commits_during_run": per_writer(samples, lambda s: s["commits"]),
        "duration_s": p.interference_s,
        "baseline_s": 2 * p.interference_baseline_s,
        "hub_bandwidth_bps": p.interference_bandwidth_bps,
        "commit_every_s": p.interference_commit_every * 60,
    }
    memory = {
        "baseline_trainer_peak_rss_mb": median([s["peak_rss_without_mb"] for s in runs]),
        "trainer_peak_rss_mb": per_writer(samples, lambda s: s["peak_rss_mb"]),
        "trainer_added_peak_rss_mb": per_writer(samples, lambda s: s["peak_rss_mb"] - s["peak_rss_without_mb"]),
        "uploader_peak_rss_mb": per_writer(samples, lambda s: s["uploader_peak_rss_mb"]),
    }
    return interference, memory


# ---------------------------------------------------------------- 3. upload amplification


def _amplification_run(bench: Bench, writer: str, lfs: bool) -> dict:
    p = bench.profile
    hub = bench.hub(lfs)
    received_before = hub.stats()["bytes_received"]
    with bench.worker(
        "amplification", writer, lfs=lfs, finish_timeout=300, commit_every=p.amplification_commit_every,
        steps_per_s=p.amplification_steps_per_s,
    ) as process:
        repo_id = process.config["repo_id"]
        process.expect("ready", 120)
        start = repo_commits(hub, repo_id)
        budget = p.amplification_commits * p.amplification_commit_every * 60 * 6 + 60
        reached = wait_until(
            lambda: repo_commits(hub, repo_id) - start >= p.amplification_commits or not process.alive(), budget)
        process.send("stop")
        closed = process.expect("closed", 600)
    commits = repo_commits(hub, repo_id)
    if not reached:
        print(f"  amplification/{writer}: only {commits - start} commits in {budget:.0f} s", file=sys.stderr)
    received = hub.stats()["bytes_received"] - received_before
    return {"ratio": received / closed["event_bytes"], "commits": commits, "received_mb": received / 1e6,
            "event_mb": closed["event_bytes"] / 1e6}


def amplification(bench: Bench) -> dict:
    p = bench.profile
    result: dict[str, Any] = {"min_commits": p.amplification_commits,
                              "commit_every_s": p.amplification_commit_every * 60}
    for mode, rounds in (("lfs", p.amplification_rounds), ("regular", p.amplification_regular_rounds)):
        if not rounds:
            continue
        samples = _interleaved(bench, f"amplification ({mode})", HUB_WRITERS, rounds,
                               lambda b, w, lfs=mode == "lfs": _amplification_run(b, w, lfs))
        result[f"amplification_{mode}"] = per_writer(samples, lambda s: s["ratio"])
        result[f"commits_{mode}"] = per_writer(samples, lambda s: s["commits"])
        result[f"event_mb_{mode}"] = per_writer(samples, lambda s: s["event_mb"])
        result[f"received_mb_{mode}"] = per_writer(samples, lambda s: s["received_mb"])
        values = result[f"amplification_{mode}"]
        result[f"ratio_{mode}_huggingface_hub_vs_ours"] = divide(values["huggingface_hub"], values["ours"])
    return result


# ---------------------------------------------------------------- 4./5. crash loss and time to Hub


@dataclass
class HubWatch:
    """What the repo showed after the kill: steps missing, and when the last of them arrived (None: never)."""

    missing: int
    seconds: float | None = None  # from the kill to the Hub's timestamp of the commit completing the steps
    seconds_polled: float | None = None  # from the kill to the bench's poll that first saw that commit


def _watch_hub(bench: Bench, process: Worker, acknowledged: int, killed_at: tuple[float, float]) -> HubWatch:
    """Poll the repo until it holds every acknowledged step, the 30 s deadline passes, or nothing can change
    any more (no process of the run alive and no new commit for the profile's ``crash_quiet_s``).

    A download is trusted only if the commit count did not move while it ran; the commit completing the
    steps is then the newest one, and its timestamp (same machine, same clock) gives the time to the Hub."""
    hub, repo_id = bench.hub(), process.config["repo_id"]
    expected = set(range(acknowledged))
    verified, last_change, missing = -1, killed_at[0], acknowledged
    while True:
        seen_at = time.monotonic()
        commits = repo_commits(hub, repo_id)
        if commits != verified:
            present = hub_steps(hub, repo_id, bench.tmp / "downloads" / uuid.uuid4().hex)
            if repo_commits(hub, repo_id) == commits:
                verified, last_change, missing = commits, seen_at, len(expected - present)
                if not missing:
                    landed = _commit_time(hub, repo_id, commits)
                    return HubWatch(0, landed - killed_at[1], seen_at - killed_at[0])
        now = time.monotonic()
        quiet = not process.alive() and now - last_change >= bench.profile.crash_quiet_s
        if now - killed_at[0] >= CRASH_WAIT_S or quiet:
            return HubWatch(missing)
        time.sleep(POLL_S)


def _commit_time(hub: LocalHub, repo_id: str, count: int) -> float:
    """Wall-clock time of the ``count``-th commit of the repo's main branch (1 = the initial commit)."""
    from huggingface_hub import HfApi

    history = HfApi(endpoint=hub.endpoint, token=hub.token()).list_repo_commits(repo_id)  # newest first
    return history[len(history) - count].created_at.timestamp()


def _crash_run(bench: Bench, writer: str) -> dict:
    p = bench.profile
    with bench.worker("crash", writer, finish_timeout=60, commit_every=p.crash_commit_every,
                      pause_s=0.002) as process:
        process.expect("ready", 120)
        if not wait_until(lambda: process.last_step >= 0 or process.proc.poll() is not None, 60):
            raise BenchError(f"{process} logged nothing{process.stderr_tail()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(bench.rng.uniform(*p.crash_kill_window_s))  # returns early only if it died
            raise BenchError(f"{process} died before the kill{process.stderr_tail()}")
        killed_at = process.kill()
        acknowledged = process.last_step + 1
        if writer == "tensorboardX":  # local only: what never reached the disk
            watch = HubWatch(len(set(range(acknowledged)) - scalar_steps(Path(process.config["logdir"]))))
        else:
            watch = _watch_hub(bench, process, acknowledged, killed_at)
    return {"acknowledged": acknowledged, "lost": watch.missing, "seconds": watch.seconds,
            "seconds_polled": watch.seconds_polled}


def crash(bench: Bench) -> tuple[dict, dict]:
    p = bench.profile
    samples = _interleaved(bench, "crash", WRITERS, p.crash_rounds, _crash_run)
    crash_loss = {
        "lost_events": per_writer(samples, lambda s: s["lost"]),
        "lost_events_max": per_writer(samples, lambda s: s["lost"], max_or_none),
        "acknowledged_events": per_writer(samples, lambda s: s["acknowledged"]),
        "lost_fraction": per_writer(samples, lambda s: s["lost"] / s["acknowledged"]),
        "rounds": p.crash_rounds,
    }
    worst = lambda v: None if None in v or not v else max(v)  # noqa: E731 - never, if any round never got there
    time_to_hub = {
        "seconds": per_writer(samples, lambda s: s["seconds"]),
        "seconds_max": per_writer(samples, lambda s: s["seconds"], worst),
        "seconds_polled_max": per_writer(samples, lambda s: s["seconds_polled"], worst),
    }
    return crash_loss, time_to_hub


# ---------------------------------------------------------------- 6. start-up


def _startup_run(bench: Bench, writer: str, endpoint: str | None) -> dict:
    with bench.worker("startup", writer, endpoint=endpoint, commit_every=5) as process:
        return process.expect("result", 120)


def startup(bench: Bench) -> dict:
    """Constructor latency with the Hub up and down, interleaved. tensorboardX never contacts a Hub, so it is
    only measured once per round."""
    p = bench.profile
    down = closed_port_endpoint()
    variants = (*WRITERS, *(f"{writer}/down" for writer in HUB_WRITERS))
    samples = _interleaved(bench, "startup", variants, p.startup_rounds,
                           lambda b, v: _startup_run(b, v.split("/")[0], down if v.endswith("/down") else None))
    up = {writer: samples[writer] for writer in WRITERS}
    down_samples = {writer: samples.get(f"{writer}/down", []) for writer in WRITERS}
    return {
        "import_s": per_writer(up, lambda s: s["import_s"]),
        "import_rss_mb": per_writer(up, lambda s: s["import_rss_mb"]),
        "torch_import_s": median([s["torch_import_s"] for runs in up.values() for s in runs]),
        "constructor_hub_up_s": per_writer(up, lambda s: s["constructor_s"]),
        "constructor_hub_down_s": per_writer(down_samples, lambda s: s["constructor_s"]),
        "notes": {
            variant: runs[0]["error"] for variant, runs in samples.items() if runs and runs[0]["error"]
        },
    }


# ---------------------------------------------------------------- report


@dataclass
class Row:
    scenario: str
    label: str
    values: dict[str, Any]
    unit: str = ""
    digits: int = 2
    target: str = ""
    met: bool | None = None
    notes: dict[str, str] = field(default_factory=dict)  # shown instead of a missing value
    suffix: dict[str, str] = field(default_factory=dict)  # shown after a value


def _fmt(value: Any, digits: int, unit: str, note: str | None = None) -> str:
    if value is None:
        return note or "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = f"{value:.{digits}f}"
    return f"{text}{unit}"


def _check(value: Any, test: Callable[[Any], bool]) -> bool | None:
    return None if value is None else bool(test(value))


def report_rows(results: dict) -> list[Row]:
    """The table's rows, for the scenarios that ran."""
    rows: list[Row] = []
    for scenario, build in ROW_BUILDERS.items():
        if scenario in results:
            rows.extend(build(results))
    return rows


PUSHED = {"ours": " (incl. Hub push)"}


def _logging_rows(r: dict) -> list[Row]:
    c = r["logging_cost"]
    ratio = c["ratio_scalar_ours_vs_tensorboardX"]
    return [
        Row("1. logging cost", f"`add_scalar` events/s until return ({c['n_scalars']:,} scalars)",
            c["scalar_events_per_s"], digits=0, target=f"≥ 10× tensorboardX (ours: {_fmt(ratio, 2, '×')})",
            met=_check(ratio, lambda x: x >= 10)),
        Row("", "`add_scalar` events/s incl. `close()` ¹", c["scalar_events_per_s_incl_close"], digits=0,
            suffix=PUSHED),
        Row("", f"mixed steps/s until return ({c['n_mixed_steps']:,} steps: 2 scalars, histogram, 32×32 image)",
            c["mixed_steps_per_s"], digits=0,
            target=f"ours {_fmt(c['ratio_mixed_ours_vs_tensorboardX'], 2, '×')} tensorboardX"),
        Row("", "mixed steps/s incl. `close()` ¹", c["mixed_steps_per_s_incl_close"], digits=0, suffix=PUSHED),
        Row("", "bytes still in user space when `add_*` returned", c["user_space_buffered_bytes"], " B",
            target="ours 0", met=_check(c["user_space_buffered_bytes"]["ours"], lambda x: x == 0)),
    ]


def _interference_rows(r: dict) -> list[Row]:
    i = r["interference"]
    p50 = i["ratio_p50_vs_no_logging"]
    return [
        Row("2. training interference", "step time p50 with logging / without, same process (no logging: "
            f"{_fmt(i['baseline_step_ms_p50'], 2, ' ms')}) ⁵", p50, "×", 3, "ours ≤ 1.03×",
            _check(p50["ours"], lambda x: x <= 1.03)),
        Row("", "… worst round", i["ratio_p50_vs_no_logging_max"], "×", 3),
        Row("", f"step time p99 with logging / without (no logging: {_fmt(i['baseline_step_ms_p99'], 2, ' ms')})",
            i["ratio_p99_vs_no_logging"], "×", 3),
        Row("", "step time p50 / p99 with logging", {
            w: f"{_fmt(i['step_ms_p50'][w], 2, '')} / {_fmt(i['step_ms_p99'][w], 2, ' ms')}" for w in WRITERS
        }),
        Row("", "commits during the timed phase", i["commits_during_run"], "", 0),
    ]


def _amplification_rows(r: dict) -> list[Row]:
    a = r["amplification"]
    rows = [
        Row("3. upload amplification", "bytes received by the Hub / event bytes (LFS, raw uploads)",
            a["amplification_lfs"], "×", 3, "ours ≤ 1.05×", _check(a["amplification_lfs"]["ours"], lambda x: x <= 1.05),
            notes={"tensorboardX": "local only"}),
        Row("", "commits (LFS run)", a["commits_lfs"], "", 0, notes={"tensorboardX": "—"}),
        Row("", "event data logged (LFS run)", a["event_mb_lfs"], " MB", 1, notes={"tensorboardX": "—"}),
    ]
    if "amplification_regular" in a:
        rows.append(Row("", "bytes received / event bytes (regular mode, base64 bodies)", a["amplification_regular"],
                        "×", 3, notes={"tensorboardX": "local only"}))
    return rows


def _crash_rows(r: dict) -> list[Row]:
    c = r["crash_loss"]
    return [
        Row("4. crash loss", f"acknowledged events not on the Hub 30 s after SIGKILL (worst of {c['rounds']})",
            c["lost_events_max"], "", 0, "ours 0", _check(c["lost_events_max"]["ours"], lambda x: x == 0)),
        Row("", "… as a fraction of the acknowledged events (median) ²", c["lost_fraction"], "", 3),
    ]


def _time_rows(r: dict) -> list[Row]:
    t = r["time_to_hub_s"]
    never = {"tensorboardX": "local only", "huggingface_hub": "never"}
    return [
        Row("5. time to Hub after SIGKILL", "seconds from the kill to the Hub's commit holding every logged event "
            "(worst)", t["seconds_max"], " s", 2, "ours ≤ 10 s", _check(t["seconds_max"]["ours"], lambda x: x <= 10),
            notes=never),
        Row("", "… until the bench's download saw it (poll every 0.1 s + download)", t["seconds_polled_max"], " s", 2,
            notes=never),
    ]


IMPORT_CONTEXT = "numpy and torch already imported" if find_spec("torch") else "numpy already imported"


def _startup_rows(r: dict) -> list[Row]:
    s = r["startup_s"]
    down_note = {"tensorboardX": "no Hub", **{w: "raises" for w in HUB_WRITERS if f"{w}/down" in s["notes"]}}
    return [
        Row("6. start-up", f"import of the writer ({IMPORT_CONTEXT}) ⁴", s["import_s"], " s", 2),
        Row("", "… resident memory it adds", s["import_rss_mb"], " MB", 0),
        Row("", "constructor, Hub up", s["constructor_hub_up_s"], " s", 3, "ours ≤ 0.5 s",
            _check(s["constructor_hub_up_s"]["ours"], lambda x: x <= 0.5)),
        Row("", "constructor, Hub down (port closed)", s["constructor_hub_down_s"], " s", 3, "ours ≤ 3 s",
            _check(s["constructor_hub_down_s"]["ours"], lambda x: x <= 3), notes=down_note),
    ]


def _memory_rows(r: dict) -> list[Row]:
    m = r["memory_mb"]
    return [
        Row("7. memory", f"trainer peak RSS added vs no logging (no logging: "
            f"{_fmt(m['baseline_trainer_peak_rss_mb'], 0, ' MB')}) ³", m["trainer_added_peak_rss_mb"], " MB", 0),
        Row("", "uploader process peak RSS", m["uploader_peak_rss_mb"], " MB", 0,
            notes={"tensorboardX": "—", "huggingface_hub": "in-process thread"}),
    ]


ROW_BUILDERS: dict[str, Callable[[dict], list[Row]]] = {
    "logging_cost": _logging_rows,
    "interference": _interference_rows,
    "amplification": _amplification_rows,
    "crash_loss": _crash_rows,
    "time_to_hub_s": _time_rows,
    "startup_s": _startup_rows,
    "memory_mb": _memory_rows,
}

FOOTNOTES = (
    "¹ tensorboardX and huggingface_hub buffer events in a queue and flush them at `close()`; hf-summary's "
    "`close()` also waits for the final push to the (local) Hub.",
    "² tensorboardX: acknowledged events missing from the local event file after the SIGKILL (it has no Hub).",
    "³ peak RSS after the logged phase minus peak RSS after the first no-logging phase of the same process, which "
    "imported numpy, torch (if installed) and all three writers' modules first: the cost of logging alone (imports: "
    "see 6.); huggingface_hub's upload thread lives in the trainer.",
    "⁴ a training script has numpy (and torch) loaded already; tensorboardX imports torch whenever it is installed.",
    "⁵ each run times the loop without a writer, then with one (uploads going on), then without again after "
    "`close()`, in one process; the figure is the median over rounds of the per-run ratio.",
)


def render_table(results: dict) -> str:
    lines = [
        "| scenario | figure | hf-summary (ours) | tensorboardX | huggingface_hub | target | met |",
        "|---|---|--:|--:|--:|---|:-:|",
    ]
    for row in report_rows(results):
        cells = [_fmt(row.values.get(w), row.digits, row.unit, row.notes.get(w)) + row.suffix.get(w, "")
                 for w in ("ours", *WRITERS[:2])]
        met = {True: "✅", False: "❌", None: ""}[row.met]
        lines.append(f"| {row.scenario} | {row.label} | {' | '.join(cells)} | {row.target} | {met} |")
    return "\n".join([*lines, "", *FOOTNOTES])


def render_workloads(profile: Profile, results: dict) -> str:
    """What each scenario ran, from the profile (so that the table can be read on its own)."""
    p = profile
    reps = results.get("interference", {}).get("train_step_reps")
    lines = {
        "logging_cost": f"{p.rounds} round(s): {p.n_scalars:,} `add_scalar` calls, then {p.n_mixed:,} mixed steps "
        "on a new writer.",
        "interference": f"{p.interference_rounds} round(s) per writer of {p.interference_baseline_s:g} s without "
        f"logging, {p.interference_s:g} s with, {p.interference_baseline_s:g} s without: a single-threaded numpy "
        f"step (~5 ms; {reps} matmul+tanh reps) logging 2 scalars per step and a 1000-value histogram every "
        f"{p.histogram_every} steps, timed after a warm-up (≥ {p.interference_warmup_steps} steps, and until a Hub "
        f"writer's first push landed); commit every {p.interference_commit_every * 60:g} s; the Hub reads request "
        f"bodies at {p.interference_bandwidth_bps / 1000:g} kB/s.",
        "amplification": f"{p.amplification_rounds} round(s) (LFS) and {p.amplification_regular_rounds} (regular): "
        f"{p.amplification_steps_per_s:g} mixed steps/s until the repo got {p.amplification_commits} more commits "
        f"(commit every {p.amplification_commit_every * 60:g} s), then `close()` and final push.",
        "crash_loss": f"{p.crash_rounds} round(s): a scalar (+ a histogram every 10 steps) every ~2 ms, commit "
        f"every {p.crash_commit_every * 60:g} s, SIGKILL after {p.crash_kill_window_s[0]:g}-"
        f"{p.crash_kill_window_s[1]:g} s (random); repo files downloaded and scanned record by record.",
        "startup_s": f"{p.startup_rounds} round(s), each in a fresh process.",
    }
    numbers = {"logging_cost": "1", "interference": "2, 7", "amplification": "3", "crash_loss": "4, 5",
               "startup_s": "6"}
    shown = [f"- Scenario {numbers[key]}: {line}" for key, line in lines.items() if key in results]
    return "Workloads:\n\n" + "\n".join(shown)


def render_header(machine: dict, profile: Profile, seed: int) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    return (
        f"hf-summary benchmark ({profile.name} run, seed {seed}), {machine['date']}\n\n"
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']}; "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- Python {machine['python']}; {packages}; repo at {machine['git_commit']}\n"
        f"- Local Hub (`hf_summary.localhub`) in basic-LFS mode on loopback; each figure is the median over "
        f"interleaved rounds, every run in a fresh process"
    )


# ---------------------------------------------------------------- main


def run_scenarios(bench: Bench, only: set[str]) -> dict:
    results: dict[str, Any] = {}
    if "logging_cost" in only:
        results["logging_cost"] = logging_cost(bench)
    if only & {"interference", "memory_mb"}:
        if bench.profile.calibrate:
            bench.calibrate()
        results["interference"], results["memory_mb"] = interference_and_memory(bench)
        results["interference"]["train_step_reps"] = bench.reps
    if "amplification" in only:
        results["amplification"] = amplification(bench)
    if only & {"crash_loss", "time_to_hub_s"}:
        results["crash_loss"], results["time_to_hub_s"] = crash(bench)
    if "startup_s" in only:
        results["startup_s"] = startup(bench)
    return {key: value for key, value in results.items() if key in only}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes and one round (< 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="every scenario at minimal size (for the test suite)")
    parser.add_argument("--only", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds of every scenario")
    parser.add_argument("--seed", type=int, help="seed of the random kill moments (default: random)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the header, table and workloads to this file")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if only - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(only - set(SCENARIOS)))}")
    args.only = only
    return args


def _profile(args: argparse.Namespace) -> Profile:
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.rounds:
        profile = replace(profile, rounds=args.rounds, interference_rounds=args.rounds,
                          amplification_rounds=args.rounds, crash_rounds=args.rounds, startup_rounds=args.rounds)
    return profile


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = _profile(args)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    machine = machine_facts()
    load = machine["load_average_at_start"]
    print(f"hf-summary benchmark: {profile.name} run, seed {seed} (load average {load})", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            bench = Bench(profile, stack, seed)
            results = run_scenarios(bench, args.only)
            errors, raw = bench.errors, bench.raw
    except KeyboardInterrupt:
        print("\ninterrupted; every process and temp dir of the bench was cleaned up", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    document = {"machine": machine, "profile": asdict(profile), "seed": seed, "elapsed_s": elapsed,
                **results, "errors": errors, "raw": raw}
    report = (f"{render_header(machine, profile, seed)}\n\n{render_table(results)}\n\n"
              f"{render_workloads(profile, results)}\n\nThe run took {elapsed:.0f} s.\n")
    print(f"\n{report}")
    if errors:
        print(f"\nerrors: {json.dumps(errors, indent=2)}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(report)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
