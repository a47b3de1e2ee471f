"""Fault soak: a trainer logs steadily while the local Hub misbehaves; check that nothing is lost.

Usage::

    python scripts/soak.py                       # 10 minutes, a push every 6 s
    python scripts/soak.py --minutes 0.75 --commit-every 0.05 --json soak.json   # the test suite's variant

A trainer (a fresh interpreter, as in real use) logs scalars every step, a histogram every 10 steps and an
image every 100 steps at a steady rate with `HFSummaryWriter`, timing every `add_*` call. Meanwhile
the local Hub goes through fault phases, in turn and then mixed: 5xx bursts, 429 with `Retry-After`,
2-second latency on every request, connections dropped mid-upload (reset), a throttled upload bandwidth,
and a full outage (the server is stopped, then restarted on the same port and data dir). The driver
samples the uploader's RSS (psutil) and the journal's oldest pending age every half second.

At the end the trainer closes its writer and the driver checks:

- every event logged is on the Hub (raw record scan of the logdir and of the downloaded repo, compared);
- the trainer's acknowledged `add_*` calls are all in the logdir;
- the number of commits stays within one per tick (plus the final push, plus one per failed attempt);
- the uploader's memory stays flat (median RSS of the last quarter vs the first quarter);
- the trainer never waited on the network (max / p99 `add_*` latency under a bound);
- the uploader never restarted, nothing is pending, and no uploader process is left.

It prints a summary (`--json PATH` also writes it) and exits 0 when every check passes, 1 otherwise.
Every process started here (the local Hub, the trainer, its uploader) is ended by its own PID on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit.stats import percentile

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMIT_PREFIX = "hf-summary:"

# (name, fault rules, bandwidth limit in bytes/s); "outage" stops the server for the whole phase.
PHASES: list[tuple[str, list[dict], int | None]] = [
    ("clean", [], None),
    ("5xx bursts", [
        {"method": "POST", "path": r"/(commit|preupload)/", "status": 503, "times": 6},
        {"path": r"^/api/", "status": 500, "probability": 0.25},
    ], None),
    ("429 Retry-After", [{"path": r"/(commit|preupload)/", "status": 429, "retry_after": 2, "probability": 0.6}], None),
    ("2 s latency", [{"delay_s": 2.0}], None),
    ("reset mid-upload", [{"method": "POST", "path": r"/commit/", "reset": True, "delay_s": 0.3, "probability": 0.6}],
     None),
    ("throttled 16 kB/s", [], 16_000),
    ("outage", [], None),
    ("mixed", [
        {"path": r"^/api/", "status": 503, "probability": 0.15},
        {"path": r"/(commit|preupload)/", "status": 429, "retry_after": 1, "probability": 0.1},
        {"method": "POST", "path": r"/commit/", "reset": True, "delay_s": 0.2, "probability": 0.15},
        {"delay_s": 2.0, "probability": 0.3},
    ], 64_000),
    ("clean (recovery)", [], None),
]


# ------------------------------------------------------------------------------------------- trainer side


class _CallTimes:
    """The trainer's `add_*` calls: each one's latency by kind, the ten slowest, and the errors it would see."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"scalar": [], "histogram": [], "image": []}
        self.slowest: list[tuple[float, float, str]] = []  # (latency, seconds since start, kind)
        self.errors: list[str] = []
        self.started = time.monotonic()

    def timed(self, kind: str, call, *call_args) -> None:
        t0 = time.perf_counter()
        try:
            call(*call_args)
        except Exception as exc:  # the trainer would see it: count it, keep going
            self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - t0
        self.latencies[kind].append(elapsed)
        if len(self.slowest) < 10 or elapsed > self.slowest[-1][0]:
            self.slowest.append((elapsed, time.monotonic() - self.started, kind))
            self.slowest.sort(reverse=True)
            del self.slowest[10:]

    def figures(self) -> dict[str, Any]:
        latencies = self.latencies
        return {
            "acknowledged": {kind: len(values) for kind, values in latencies.items()},
            "latency": {"all": _latency_figures([v for values in latencies.values() for v in values]),
                        **{kind: _latency_figures(values) for kind, values in latencies.items()}},
            "slowest": [{"ms": lat * 1e3, "at_s": at, "kind": kind} for lat, at, kind in self.slowest],
            "errors": self.errors[:20],
            "error_count": len(self.errors),
        }


def _latency_figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "max_ms": max(values) * 1e3, "p99_ms": percentile(values, 0.99) * 1e3,
            "p50_ms": percentile(values, 0.5) * 1e3}


def _log_until(stop: threading.Event, writer, calls: _CallTimes, steps_per_s: float, seed: int) -> int:
    """The paced loop: two scalars a step, a histogram every 10 steps, an image every 100; returns the steps."""
    import numpy as np

    rng = np.random.default_rng(seed)
    period = 1.0 / steps_per_s
    next_step = time.monotonic()
    step = 0
    while not stop.is_set():
        calls.timed("scalar", writer.add_scalar, "train/loss", float(1.0 / (1 + step)), step)
        calls.timed("scalar", writer.add_scalar, "train/lr", float(1e-3 * 0.999 ** (step // 100)), step)
        if step % 10 == 0:
            calls.timed("histogram", writer.add_histogram, "weights", rng.normal(size=1000), step)
        if step % 100 == 0:
            calls.timed("image", writer.add_image, "sample", rng.integers(0, 255, (3, 32, 32), dtype=np.uint8), step)
        step += 1
        next_step += period
        delay = next_step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # fell far behind (a slow machine): do not try to catch up in a burst
            next_step = time.monotonic()
    return step


def trainer_main(argv: list[str]) -> int:
    """The trainer: log until a line arrives on stdin, then close; print one JSON line with the results."""
    parser = argparse.ArgumentParser(prog="soak.py trainer")
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--commit-every", type=float, required=True)
    parser.add_argument("--steps-per-s", type=float, default=100.0)
    parser.add_argument("--close-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from hf_summary import HFSummaryWriter

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    writer = HFSummaryWriter(
        args.repo_id, logdir=args.logdir, commit_every=args.commit_every, close_timeout=args.close_timeout,
        drain_timeout=args.close_timeout + 60,
    )
    calls = _CallTimes()
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    steps = _log_until(stop, writer, calls, args.steps_per_s, args.seed)
    logging_s = time.monotonic() - calls.started
    t0 = time.monotonic()
    writer.close()
    close_s = time.monotonic() - t0
    print(json.dumps({"steps": steps, "logging_s": logging_s, "close_s": close_s, **calls.figures()}), flush=True)
    return 0


# -------------------------------------------------------------------------------------------- driver side


def uploader_processes(logdir: Path) -> list:
    """Live uploader processes of `logdir`, found by their command line (never by name alone)."""
    import psutil

    found = []
    target = str(logdir.resolve())
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if "hf_summary.uploader" in cmdline and target in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@dataclass
class Samples:
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (t, pid, rss bytes)
    pending_age: list[tuple[float, float]] = field(default_factory=list)  # (t, oldest pending age s)
    uploader_pids: list[int] = field(default_factory=list)  # in order of first sight


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="hf-summary-soak-"))
        self.logdir = self.work / "run"
        self.repo_id = f"alice/soak-{int(time.time())}"
        self.samples = Samples()
        self.hub = None
        self.trainer: subprocess.Popen | None = None
        self._trainer_stderr = None
        self.phase_log: list[dict[str, Any]] = []
        self.notes: list[str] = []

    # -- processes --------------------------------------------------------------------------------------

    def start_hub(self) -> None:
        from hf_summary.localhub.testing import LocalHub

        self.hub = LocalHub(commit_limit=self.args.commit_limit)
        self.hub.__enter__()

    def start_trainer(self) -> None:
        self._trainer_stderr = open(self.work / "trainer.stderr", "w")  # closed in cleanup()
        env = {
            **os.environ,
            "HF_ENDPOINT": self.hub.endpoint,
            "HF_TOKEN": self.hub.token("alice"),
            "HF_HOME": str(self.work / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
            "PYTHONUNBUFFERED": "1",
        }
        self.trainer = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "trainer", "--repo-id", self.repo_id,
             "--logdir", str(self.logdir), "--commit-every", repr(self.args.commit_every),
             "--steps-per-s", repr(self.args.steps_per_s), "--close-timeout", repr(self.args.close_timeout),
             "--seed", str(self.args.seed)],
            env=env, cwd=self.work, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._trainer_stderr, text=True,
        )
        hello = self.trainer.stdout.readline()
        if not hello.startswith("{"):
            raise RuntimeError(f"the trainer did not start: {hello!r}; see {self.work / 'trainer.stderr'}")

    def cleanup(self) -> None:
        if self.trainer is not None and self.trainer.poll() is None:
            self.trainer.kill()
            self.trainer.wait()
        if self._trainer_stderr is not None:
            self._trainer_stderr.close()
        self._kill_uploaders()
        if self.hub is not None:
            self.hub.__exit__(None, None, None)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def _kill_uploaders(self) -> None:
        import psutil

        for process in uploader_processes(self.logdir):
            with contextlib.suppress(psutil.Error):
                process.kill()
                process.wait(10)

    # -- sampling ---------------------------------------------------------------------------------------

    def sample(self, journal_holder: list) -> None:
        import psutil

        from hf_summary.journal import Journal

        now = time.monotonic() - self.t0
        for process in uploader_processes(self.logdir):
            with contextlib.suppress(psutil.Error):
                self.samples.rss.append((now, process.pid, process.memory_info().rss))
                if process.pid not in self.samples.uploader_pids:
                    self.samples.uploader_pids.append(process.pid)
        if not journal_holder:
            with contextlib.suppress(Exception):
                journal_holder.append(Journal(self.logdir, create=False))
        if journal_holder:
            with contextlib.suppress(Exception):
                age = journal_holder[0].status()["oldest_pending_age_s"]
                self.samples.pending_age.append((now, age or 0.0))

    def sleep_sampling(self, seconds: float, journal_holder: list, *, trainer_may_end: bool = False) -> None:
        end = time.monotonic() + seconds
        while True:
            if not trainer_may_end and self.trainer.poll() is not None:
                tail = (self.work / "trainer.stderr").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the trainer died (status {self.trainer.returncode}):\n{tail}")
            self.sample(journal_holder)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(self.args.sample_every, left))

    # -- the run ----------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        say = self.say
        self.start_hub()
        say(f"local Hub at {self.hub.endpoint}; work dir {self.work}")
        self.start_trainer()
        self.t0 = time.monotonic()
        total_s = self.args.minutes * 60
        phase_s = total_s / len(PHASES)
        journal_holder: list = []
        try:
            for name, rules, bandwidth in PHASES:
                start = time.monotonic() - self.t0
                say(f"[{start:6.1f} s] phase: {name}")
                if name == "outage":
                    self.hub.stop()
                    self.sleep_sampling(phase_s, journal_holder)
                    self.hub.start()
                else:
                    self.hub.set_faults(rules, bandwidth_bps=bandwidth)
                    self.sleep_sampling(phase_s, journal_holder)
                self.phase_log.append({"name": name, "start_s": start, "end_s": time.monotonic() - self.t0})
            self.hub.clear_faults()
            say(f"[{time.monotonic() - self.t0:6.1f} s] stopping the trainer; close() waits for the final push")
            self.trainer.stdin.write("stop\n")
            self.trainer.stdin.flush()
            line = ""
            deadline = time.monotonic() + self.args.close_timeout + 120
            while self.trainer.poll() is None and time.monotonic() < deadline:
                self.sleep_sampling(self.args.sample_every, journal_holder, trainer_may_end=True)
            if self.trainer.poll() is None:
                raise RuntimeError("the trainer did not finish closing in time")
            line = self.trainer.stdout.read().strip().splitlines()[-1] if self.trainer.stdout else ""
            trainer = json.loads(line)
            upload_wait = time.monotonic()
            while uploader_processes(self.logdir) and time.monotonic() - upload_wait < 120:
                time.sleep(0.2)
            uploader_left = [p.pid for p in uploader_processes(self.logdir)]
        finally:
            for journal in journal_holder:
                journal.close()
        return self.report(trainer, uploader_left, time.monotonic() - self.t0)

    # -- the report -------------------------------------------------------------------------------------

    def _hub_events(self) -> tuple[set, set, list[str]]:
        """The events in the logdir, those in the repo (downloaded with the real client), the commit titles."""
        from huggingface_hub import HfApi

        from hf_summary.verify import event_keys

        api = HfApi(endpoint=self.hub.endpoint, token=self.hub.token("alice"))
        folder = f"tensorboard/{self.logdir.name}"
        download = self.work / "hub"
        api.snapshot_download(self.repo_id, local_dir=download, allow_patterns=f"{folder}/*")
        on_hub = event_keys(download / folder) if (download / folder).exists() else set()
        return event_keys(self.logdir), on_hub, [c.title for c in api.list_repo_commits(self.repo_id)]

    def _journal_figures(self) -> dict[str, Any]:
        """What the journal and the uploader's log say: status, segments, errors and commits, pending ages."""
        from hf_summary.journal import Journal
        from hf_summary.journal import journal_path as _journal_path

        with Journal(self.logdir, create=False) as journal:
            status = journal.status()
            rows = journal.segments()
            errors_in_history = journal.history("error", limit=100_000)
            commits_in_history = journal.history("commit", limit=100_000)
        log_path = _journal_path(self.logdir).parent / "uploader.log"
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        return {
            "status": status, "segments": len(rows), "errors_in_history": len(errors_in_history),
            "commits_in_history": len(commits_in_history),
            "delays": [r.committed_at - r.sealed_at for r in rows if r.committed_at and r.sealed_at],
            # a transient failure, or a commit refused with 429 (the uploader then spaces its commits)
            "failed_attempts": len(re.findall(r"push failed \(attempt \d+\)|the repo's commit budget is spent",
                                              log_text)),
            "error_lines": [line for line in log_text.splitlines() if " ERROR " in line],
        }

    def _rss_quarters(self) -> tuple[float, float, float]:
        """The uploader's median RSS over the first and the last quarter of the samples, and its peak (bytes)."""
        rss = [r[2] for r in self.samples.rss]
        quarter = max(1, len(rss) // 4)
        if not rss:
            return 0, 0, 0
        return statistics.median(rss[:quarter]), statistics.median(rss[-quarter:]), max(rss)

    def report(self, trainer: dict[str, Any], uploader_left: list[int], wall_s: float) -> dict[str, Any]:
        local, on_hub, titles = self._hub_events()
        push_commits = sum(1 for t in titles if t.startswith(COMMIT_PREFIX))
        j = self._journal_figures()
        status = j["status"]
        ticks = int(trainer["logging_s"] // (self.args.commit_every * 60)) + 1  # + 1: the final push of close()
        retries = max(j["failed_attempts"], j["errors_in_history"])
        first_q, last_q, peak = self._rss_quarters()
        scalar_keys = sum(1 for k in local if k[0] == "" and k[1] in ("train/loss", "train/lr"))
        mb = 1024 * 1024
        checks = {
            "every logged event is on the Hub": local == on_hub and bool(local),
            "every acknowledged scalar is in the logdir": scalar_keys == trainer["acknowledged"]["scalar"],
            "add_* never failed": trainer["error_count"] == 0,
            "commits within one per tick plus retries": push_commits <= ticks + retries,
            "uploader memory flat": last_q <= first_q * (1 + self.args.rss_growth) + self.args.rss_slack_mb * mb,
            "add_* never waited on the network": trainer["latency"]["all"].get("max_ms", 0) <= self.args.max_latency_ms,
            "one uploader for the whole run": len(self.samples.uploader_pids) == 1,
            "nothing pending at the end": status["pending_segments"] == 0 and status["open_segments"] == 0,
            "no uploader left": not uploader_left,
        }
        return {
            "config": {
                "minutes": self.args.minutes, "commit_every_min": self.args.commit_every,
                "steps_per_s": self.args.steps_per_s, "phases": [p["name"] for p in self.phase_log],
                "phase_s": self.args.minutes * 60 / len(PHASES), "commit_limit": self.args.commit_limit,
            },
            "wall_s": wall_s,
            "trainer": trainer,
            "events": {"logged": len(local), "on_hub": len(on_hub), "missing_on_hub": len(local - on_hub),
                       "extra_on_hub": len(on_hub - local)},
            "commits": {"push_commits": push_commits, "all_commits": len(titles), "ticks": ticks,
                        "journal_commits": j["commits_in_history"],
                        "segments": j["segments"], "segments_committed": status["committed_segments"]},
            "retries": {"failed_attempts_logged": j["failed_attempts"],
                        "errors_in_journal_history": j["errors_in_history"],
                        "last_error": status["last_error"], "uploader_error_lines": j["error_lines"][-5:]},
            "pending": {"max_age_s": max(j["delays"], default=0.0),
                        "max_age_sampled_s": max((a for _, a in self.samples.pending_age), default=0.0),
                        "median_age_s": statistics.median(j["delays"]) if j["delays"] else 0.0},
            "uploader": {"pids": self.samples.uploader_pids, "samples": len(self.samples.rss), "peak_rss_mb": peak / mb,
                         "first_quarter_rss_mb": first_q / mb, "last_quarter_rss_mb": last_q / mb,
                         "left_running": uploader_left},
            "phases": self.phase_log,
            "checks": checks,
            "ok": all(checks.values()),
        }

    def say(self, message: str) -> None:
        if not self.args.quiet:
            print(message, flush=True)


def print_summary(result: dict[str, Any]) -> None:
    t, ev, co, re_, pe, up = (result[k] for k in ("trainer", "events", "commits", "retries", "pending", "uploader"))
    lat = t["latency"]
    print()
    print(f"Soak: {result['config']['minutes']:g} min, commit_every {result['config']['commit_every_min']:g} min, "
          f"phases: {', '.join(result['config']['phases'])}")
    print(f"  events logged / on Hub:  {ev['logged']} / {ev['on_hub']} (missing {ev['missing_on_hub']}, "
          f"extra {ev['extra_on_hub']}); trainer steps {t['steps']}")
    print(f"  commits:                 {co['push_commits']} pushes for {co['ticks']} ticks "
          f"({co['segments']} segments; {co['all_commits']} commits in the repo)")
    print(f"  retries:                 {re_['failed_attempts_logged']} failed push attempts "
          f"({re_['errors_in_journal_history']} errors in the journal history)")
    print(f"  pending age:             max {pe['max_age_s']:.1f} s, median {pe['median_age_s']:.1f} s "
          f"(sampled max {pe['max_age_sampled_s']:.1f} s)")
    print(f"  uploader RSS:            peak {up['peak_rss_mb']:.1f} MB; first quarter {up['first_quarter_rss_mb']:.1f} MB, "
          f"last quarter {up['last_quarter_rss_mb']:.1f} MB ({up['samples']} samples, pids {up['pids']})")
    print(f"  add_* latency:           max {lat['all'].get('max_ms', 0):.1f} ms, p99 {lat['all'].get('p99_ms', 0):.2f} ms, "
          f"p50 {lat['all'].get('p50_ms', 0):.3f} ms over {lat['all'].get('count', 0)} calls "
          f"(scalars: max {lat['scalar'].get('max_ms', 0):.1f} ms, p99 {lat['scalar'].get('p99_ms', 0):.2f} ms)")
    print(f"  close():                 {t['close_s']:.1f} s")
    for name, passed in result["checks"].items():
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")
    print("OK" if result["ok"] else "FAILED")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the trainer logs (default 10)")
    parser.add_argument("--commit-every", type=float, default=0.1, help="the writer's commit_every, minutes (0.1)")
    parser.add_argument("--steps-per-s", type=float, default=100.0, help="trainer steps per second (default 100)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary as JSON to this path")
    parser.add_argument("--close-timeout", type=float, default=300.0, help="the writer's close_timeout, s")
    parser.add_argument("--commit-limit", type=int, default=10_000, help="the local Hub's commits per repo per hour")
    parser.add_argument("--max-latency-ms", type=float, default=1000.0,
                        help="bound on any add_* call (default 1000 ms; the injected latency is 2000 ms)")
    parser.add_argument("--rss-growth", type=float, default=0.25, help="allowed RSS growth, fraction (0.25)")
    parser.add_argument("--rss-slack-mb", type=float, default=10.0, help="allowed RSS growth on top, MB (10)")
    parser.add_argument("--sample-every", type=float, default=0.5, help="seconds between samples (0.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "trainer":
        return trainer_main(argv[1:])
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    soak = Soak(args)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = soak.run()
    finally:
        soak.cleanup()
        signal.signal(signal.SIGTERM, previous)
    print_summary(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
