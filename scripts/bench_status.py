"""Benchmark `status`: looking at, recovering and pushing a month-long run, against the same run on its first day.

Two synthetic runs are built with the library's own code, tick by tick at the default 5-minute tick (288 ticks a
day): `day 1` (1 day) and `day 30` (30 days: 8,640 ticks). At each tick every run dir (`--runs`) gets a
segment (`Segment`, recorded open and sealed in the journal as the writer does); then
the push is planned as the uploader plans it (its pending segments, the assets that changed, the merges due:
timed, that is the per-push overhead), compaction prepares its merges (`hf_summary.compaction.prepare`), the
journal records the commit and the merges ride in it, and `hf_summary.compaction.apply` swaps the merged
files in. Each day a writer record is added, `hparams.yaml` is rewritten and a projector directory appears
(assets). Nothing goes to the Hub while building (no commit oid is real); then the files the logdir holds are
pushed to the local Hub in one commit, so that `recover` finds the Hub holding every committed file.

Figures, day 1 and day 30 side by side with their ratio:

- `hf-summary status LOGDIR`: a fresh `python -m hf_summary.cli` process, wall clock, median of `--reps`
  (after one warm-up run, with bytecode caches in a temporary `PYTHONPYCACHEPREFIX`: as after an install);
- `status` in-process ([`hf_summary.status.run_status`][hf_summary.status.run_status]), median, and the SQLite
  VM steps it took;
- `hf-summary recover LOGDIR` with nothing to push, a fresh process against the local Hub, median;
- per push, finding what to push: median over the last `--window` ticks of the build, and, for reference on the
  final state, the same with a walk of the whole logdir (what every push did before the asset tracker).

The query plan of every statement `status` runs is printed; one that reads a whole table or index is flagged.

Usage::

    python scripts/bench_status.py                     # day 1 vs day 30, 3 run dirs (a few minutes)
    python scripts/bench_status.py --days 3 --ticks-per-day 24 --reps 3 --json out.json   # a quick look

Every process started here (the local Hub, the CLI runs) is ended by its own pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # basic LFS: no Xet cache written outside the work dir
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from tensorboardX.proto.event_pb2 import Event  # noqa: E402
from tensorboardX.summary import scalar  # noqa: E402

from hf_summary import compaction  # noqa: E402
from hf_summary.hub import open_client  # noqa: E402
from hf_summary.journal import Journal, RunSettings  # noqa: E402
from hf_summary.liveness import WriterRecord, save_record  # noqa: E402
from hf_summary.localhub.testing import LocalHub  # noqa: E402
from hf_summary.reconcile import iter_logdir_files, logdir_relative, repo_path  # noqa: E402
from hf_summary.segments import Segment, segment_name  # noqa: E402
from hf_summary.status import run_status  # noqa: E402
from hf_summary.uploader.pusher import Pusher  # noqa: E402

PATTERNS = ["*.tfevents.*", "*.yaml", "*.pbtxt", "*.tsv"]
EVENTS_PER_SEGMENT = 10
USER = "alice"


# ---------------------------------------------------------------- building a run


def _settings(name: str, repo_id: str, endpoint: str) -> RunSettings:
    return RunSettings(repo_id=repo_id, repo_type="model", revision="main", path_in_repo=f"tensorboard/{name}",
                       allow_patterns=PATTERNS, ignore_patterns=None, squash_history=False, commit_every_s=300.0,
                       private=None, endpoint=endpoint)


def _write_segment(journal: Journal, settings: RunSettings, run: str, run_id: str, step: int) -> int:
    """One segment of `run` as the writer makes it: recorded open, written, sealed, recorded sealed."""
    name = segment_name(journal.next_sequence(), socket.gethostname(), run_id=run_id)
    row_id = journal.add_open_segment(run, name, repo_path(settings, run, name), os.getpid())
    path = journal.logdir / logdir_relative(run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    segment = Segment(path)
    for n in range(EVENTS_PER_SEGMENT):
        event = Event(wall_time=time.time(), step=step * EVENTS_PER_SEGMENT + n, summary=scalar("loss", 1.0 / (n + 1)))
        segment.write_record(event.SerializeToString())
    sealed = segment.seal()
    journal.mark_sealed(row_id, sealed.size, sealed.sha256)
    return row_id


def _daily_assets(logdir: Path, day: int) -> None:
    """What a day adds besides segments: a rewritten `hparams.yaml`, a projector directory and its config."""
    (logdir / "hparams.yaml").write_text(f"lr: {0.1 / (day + 1):.6f}\nday: {day}\n")
    projector = logdir / f"{day * 288:05d}" / "embedding"
    projector.mkdir(parents=True, exist_ok=True)
    (projector / "tensors.tsv").write_text("".join(f"{i}\t{i * day}\n" for i in range(50)))
    (projector / "metadata.tsv").write_text("".join(f"{i}\n" for i in range(50)))
    (logdir / "projector_config.pbtxt").write_text(
        "".join(f'embeddings {{ tensor_path: "{d * 288:05d}/embedding/tensors.tsv" }}\n' for d in range(day + 1))
    )


def _find_what_to_push(uploader: Pusher, runs: list[str], *, full: bool = False) -> int:
    """What a push looks at before its commit: pending segments, changed assets, merges due. Returns a count."""
    journal = uploader.journal
    pending = uploader.pushable()
    assets = uploader.assets.changed(journal.get_value("assets", {}), full=full)
    merges = sum(compaction.mergeable(journal.live_files(run)) is not None for run in runs)
    return len(pending) + len(assets) + merges


def build(logdir: Path, settings: RunSettings, *, days: int, ticks_per_day: int, runs: list[str],
          token: str) -> dict[str, Any]:
    """Build a run of `days` days; returns the per-push planning times (s) of every tick."""
    logdir.mkdir(parents=True)
    with Journal(logdir) as journal:
        journal.db.execute("PRAGMA synchronous=OFF")  # building only: the run is made, not protected
        journal.save_settings(settings)
        run_id = journal.run_id()
        uploader = Pusher.open(journal, settings, token)
        plan_s: list[float] = []
        for tick in range(days * ticks_per_day):
            day, tick_of_day = divmod(tick, ticks_per_day)
            if tick_of_day == 0:
                _daily_assets(logdir, day)
                now = time.time()
                save_record(journal, WriterRecord(socket.gethostname(), 10_000_000 + day, now, False, now, now, now))
            ids = [_write_segment(journal, settings, run, run_id, tick) for run in runs]
            started = time.perf_counter()
            _find_what_to_push(uploader, runs)
            plan_s.append(time.perf_counter() - started)
            ride = compaction.prepare(journal, settings, uploader.client, set(runs))
            assets = uploader.assets.changed(journal.get_value("assets", {}))
            journal.mark_committed(ids, f"{tick:040x}", None, ride.compaction_ids)
            compaction.apply(journal)
            if assets:
                journal.set_value("assets", {**journal.get_value("assets", {}), **assets})
        started = time.perf_counter()
        _find_what_to_push(uploader, runs, full=True)
        walk_s = time.perf_counter() - started
        status = journal.status()
    return {"plan_s": plan_s, "walk_s": walk_s, "segments": len(runs) * days * ticks_per_day,
            "live_files": status["committed_segments"], "replaced": status["replaced_segments"]}


def seed_hub(logdir: Path, settings: RunSettings, token: str) -> None:
    """Push every file the logdir holds (its live segments, merged files and assets) in one commit."""
    client = open_client(repo_id=settings.repo_id, repo_type=settings.repo_type, endpoint=settings.endpoint,
                         token=token)
    client.ensure_repo(private=None)
    files = [(logdir / logdir_relative(run, name), repo_path(settings, run, name))
             for run, name in iter_logdir_files(logdir)]
    client.commit_files(files, "seed: the logdir as its pushes left it")


# ---------------------------------------------------------------- measuring


def _cli_env(pycache: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "HF_HUB_OFFLINE")}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONPYCACHEPREFIX=str(pycache), HF_TOKEN=token)
    return env


def time_cli(args: list[str], env: dict[str, str], reps: int) -> dict[str, Any]:
    """Median and max wall clock of `python -m hf_summary.cli ARGS` in fresh processes (one warm-up first)."""
    times = []
    for n in range(reps + 1):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "hf_summary.cli", *args], env=env, capture_output=True,
                                text=True, timeout=600)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"hf-summary {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
        if n:
            times.append(elapsed)
    return {"median_s": statistics.median(times), "max_s": max(times), "stdout": result.stdout}


def time_status_in_process(logdir: Path, reps: int) -> dict[str, Any]:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run_status(logdir)
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times)}


def status_queries(logdir: Path) -> dict[str, Any]:
    """The statements `status` runs on the journal, their query plans, and the SQLite VM steps they took."""
    from hf_summary.liveness import writer_records

    with Journal(logdir, create=False) as journal:
        statements: list[str] = []
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        journal.db.set_trace_callback(statements.append)
        journal.db.set_progress_handler(count, 1)
        journal.status()
        journal.load_settings()
        journal.lease_owner()
        writer_records(journal)
        journal.db.set_progress_handler(None, 1)
        journal.db.set_trace_callback(None)
        plans = {}
        for sql in dict.fromkeys(s for s in statements if s.lstrip().upper().startswith("SELECT")):
            rows = journal.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans[sql] = [row[3] for row in rows]
    scans = [sql for sql, plan in plans.items()  # SEARCH: an index lookup; SCAN: a whole table or index read
             if any(step.startswith("SCAN ") and "VIRTUAL TABLE" not in step for step in plan)]
    return {"vm_steps": steps[0], "plans": plans, "scans": scans}


def python_startup_s(reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------- report


def _ratio(last: float, first: float) -> float | None:
    return None if not first else last / first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="length of the long run in days (default: 30)")
    parser.add_argument("--ticks-per-day", type=int, default=288, help="ticks a day (default: 288, a 5-minute tick)")
    parser.add_argument("--runs", type=int, default=3, help="run dirs (default: 3: the logdir and two sub-runs)")
    parser.add_argument("--reps", type=int, default=9, help="repetitions of each timed command (default: 9)")
    parser.add_argument("--window", type=int, default=50, help="last ticks whose push planning is timed")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the runs (and keep the local Hub's data, in KEEP/hub) here, and keep them")
    args = parser.parse_args(argv)
    runs = ["", *(f"pair/{chr(ord('a') + n)}" for n in range(args.runs - 1))]
    work = Path(tempfile.mkdtemp(prefix="bench-status-")) if args.keep is None else args.keep
    document: dict[str, Any] = {"profile": {"days": args.days, "ticks_per_day": args.ticks_per_day,
                                            "runs": args.runs, "reps": args.reps}}
    try:
        with LocalHub(commit_limit=100_000, data_dir=work / "hub") as hub:
            token = hub.token(USER)
            env = _cli_env(work / "pycache", token)
            for label, days in (("day_1", 1), (f"day_{args.days}", args.days)):
                logdir = work / label
                settings = _settings(label, f"{USER}/bench-status-{label}", hub.endpoint)
                started = time.perf_counter()
                built = build(logdir, settings, days=days, ticks_per_day=args.ticks_per_day, runs=runs, token=token)
                build_s = time.perf_counter() - started
                seed_hub(logdir, settings, token)
                window = built["plan_s"][-args.window:]
                figures = {
                    "build_s": build_s,
                    "segments": built["segments"],
                    "live_files": built["live_files"],
                    "replaced_rows": built["replaced"],
                    "journal_mb": (logdir / ".hf_summary" / "journal.db").stat().st_size / 1e6,
                    "status_cli_s": time_cli(["status", str(logdir)], env, args.reps),
                    "status_in_process_s": time_status_in_process(logdir, args.reps * 5),
                    "status_queries": status_queries(logdir),
                    "recover_cli_s": time_cli(["recover", str(logdir)], env, max(3, args.reps // 3)),
                    "push_planning_ms": 1000 * statistics.median(window),
                    "push_planning_full_walk_ms": 1000 * built["walk_s"],
                }
                document[label] = figures
                print(f"built {label}: {built['segments']} segments in {build_s:.0f} s", file=sys.stderr, flush=True)
        document["python_startup_s"] = python_startup_s(args.reps)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    _print(document, f"day_{args.days}")
    if args.json is not None:
        for label in ("day_1", f"day_{args.days}"):
            for key in ("status_cli_s", "recover_cli_s"):
                document[label][key].pop("stdout", None)
        args.json.write_text(json.dumps(document, indent=2))
    return 0


def _print(document: dict[str, Any], last: str) -> None:
    first = "day_1"
    rows = [
        ("`hf-summary status` CLI, median (s)", lambda f: f["status_cli_s"]["median_s"]),
        ("`hf-summary status` CLI, max (s)", lambda f: f["status_cli_s"]["max_s"]),
        ("status in-process, median (ms)", lambda f: 1000 * f["status_in_process_s"]["median_s"]),
        ("status SQLite VM steps", lambda f: f["status_queries"]["vm_steps"]),
        ("`hf-summary recover`, nothing to push, median (s)", lambda f: f["recover_cli_s"]["median_s"]),
        ("per push: finding what to push, median (ms)", lambda f: f["push_planning_ms"]),
        ("per push: same with a walk of the whole logdir (ms)", lambda f: f["push_planning_full_walk_ms"]),
        ("segments written", lambda f: f["segments"]),
        ("live files (committed rows)", lambda f: f["live_files"]),
        ("replaced rows (compaction history)", lambda f: f["replaced_rows"]),
        ("journal size (MB)", lambda f: f["journal_mb"]),
    ]
    print(f"| figure | {first} | {last} | {last} / {first} |")
    print("|---|---|---|---|")
    for title, get in rows:
        a, b = get(document[first]), get(document[last])
        ratio = _ratio(b, a)
        print(f"| {title} | {a:.4g} | {b:.4g} | {'n/a' if ratio is None else f'{ratio:.2f}'} |")
    print(f"\npython -c pass: {document['python_startup_s']:.3f} s (interpreter start-up, for scale)")
    for label in (first, last):
        scans = document[label]["status_queries"]["scans"]
        print(f"{label}: status statements that read a whole table or index: {len(scans)}"
              + "".join(f"\n  {s}" for s in scans))
    print("\nQuery plans of status (" + last + "):")
    for sql, plan in document[last]["status_queries"]["plans"].items():
        print(f"  {' '.join(sql.split())}\n      " + "; ".join(plan))


if __name__ == "__main__":
    sys.exit(main())
