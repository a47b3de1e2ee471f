"""Benchmark `long_run`: a roll every fraction of a second for thousands of ticks, several run dirs, against the
local Hub (basic LFS), for hf-summary's `HFSummaryWriter` and `huggingface_hub.HFSummaryWriter`.

Reported for the first and the last 10% of the run: push time (hf-summary: seal to commit of each segment;
huggingface_hub: each scheduled `upload_folder`), `status` time (`run_status`, in the parent), `add_*`
latency p50/p99/max of each call (`add_scalar`, `add_scalars` of two tags; the first step excluded: its calls
make the first segment of each run dir), event files
per run dir on the Hub; for the whole run: bytes the Hub received per byte logged, and `recover` with nothing to
push. The Hub and `status` are sampled from the parent process: a sampler thread in the trainer would hold its GIL
and show up in the `add_*` latencies (huggingface_hub's push times are still polled in its trainer).

Usage::

    python scripts/bench_long_run.py                        # 2,000 rolls, a tick every 0.12 s, both writers
    python scripts/bench_long_run.py --ticks 300 --only ours --markdown table.md

Each writer runs in a fresh interpreter (`--worker`) with `HF_ENDPOINT`/`HF_TOKEN`/`HF_HUB_DISABLE_XET`
set before huggingface_hub is imported; every process started here is ended by its own pid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from benchkit.gcpauses import GCPauses, overlaps
from benchkit.output import emit
from benchkit.stats import percentile
from benchkit.trainer import trainer_env

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
WRITERS = ("ours", "huggingface_hub")
SAMPLE_EVERY_S = 1.0
CALLS_PER_STEP = 2  # add_scalar, add_scalars
STALL_MS = 5.0


# ---------------------------------------------------------------- the trainer (a fresh interpreter)


def _hub_files_per_run(api, repo_id: str, folder: str) -> int:
    """The most event files any run dir under `folder` holds on the Hub."""
    try:
        files = api.list_repo_files(repo_id)
    except Exception:  # not created yet
        return 0
    per_run = Counter(path.rsplit("/", 1)[0] for path in files if path.startswith(folder) and "tfevents" in path)
    return max(per_run.values(), default=0)


def _hfh_push_times(writer, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    """huggingface_hub's scheduler submits one `push_to_hub` future per tick: time each one (polled)."""
    seen = None
    while not stop.is_set():
        future = getattr(writer.scheduler, "last_future", None)
        if future is not None and future is not seen:
            seen, started = future, time.monotonic()
            while not future.done() and not stop.is_set():
                time.sleep(0.002)
            out.append((started, time.monotonic() - started))
        time.sleep(0.002)


def _rolls(logdir: Path) -> int:
    """How many segments the writer made in the logdir's own run dir (merged or not)."""
    from hf_summary.journal import Journal

    with Journal(logdir, create=False) as journal:
        (count,) = journal.db.execute("SELECT count(*) FROM segments WHERE run = '' AND level = 0").fetchone()
    return count


def _paced_loop(writer, steps_per_s: float, told_to_stop: threading.Event, duration: float | None) -> dict[str, Any]:
    """`add_scalar` and `add_scalars` once a step, each timed, until told to stop (or for `duration` s);
    the garbage collections meanwhile (any thread's)."""
    latencies: list[tuple[float, int]] = []
    start = time.monotonic()
    step = 0
    period = 1.0 / steps_per_s
    with GCPauses(time.monotonic_ns) as gc_pauses:
        while not told_to_stop.is_set() if duration is None else (time.monotonic() - start < duration):
            now = time.monotonic()
            t0 = time.perf_counter_ns()
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            t1 = time.perf_counter_ns()
            writer.add_scalars("pair", {"a": step * 0.5, "b": -step * 0.5}, step)
            latencies += [(now, t1 - t0), (now, time.perf_counter_ns() - t1)]
            step += 1
            time.sleep(max(0.0, start + step * period - time.monotonic()))
        end = time.monotonic()
    return {"start": start, "end": end, "steps": step, "latencies": latencies, "gc": gc_pauses.spans()}


def _our_run(logdir: Path) -> dict[str, Any]:
    """Our writer's pushes, bytes, segments and files per run dir from the journal; then `recover`'s time."""
    from hf_summary.journal import Journal
    from hf_summary.recover import recover

    result: dict[str, Any] = {}
    with Journal(logdir, create=False) as journal:
        rows = [row for row in journal.segments() if row.level == 0 and row.committed_at and row.sealed_at]
        result["pushes"] = [(row.sealed_at - time.time() + time.monotonic(), row.committed_at - row.sealed_at)
                            for row in rows]
        result["logged_bytes"] = sum(row.size or 0 for row in rows)
        result["segments"] = len(rows)
        result["files_in_logdir"] = max(Counter(row.run for row in journal.segments("committed")).values(), default=0)
    started = time.perf_counter()
    report = recover(logdir)
    result["recover_s"] = time.perf_counter() - started
    result["recover_commits"] = len(report.commits)
    result["recover_status"] = report.exit_status
    return result


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """The trainer: nothing runs in it but the loop and the writer's own threads (the parent samples the Hub and
    `status`, and tells it on stdin when the run has rolled enough)."""
    kind, logdir = config["writer"], Path(config["logdir"])
    duration = config.get("duration_s")  # huggingface_hub's writer does not roll: as long as ours took
    if kind == "ours":
        from hf_summary import HFSummaryWriter
    else:
        from huggingface_hub import HFSummaryWriter
    writer = HFSummaryWriter(config["repo_id"], logdir=str(logdir), commit_every=config["tick_s"] / 60)
    stop = threading.Event()
    told_to_stop = threading.Event()  # set when the parent says "stop" (blocked in a read until then)
    threading.Thread(target=lambda: (sys.stdin.readline(), told_to_stop.set()), daemon=True).start()
    hfh_pushes: list[tuple[float, float]] = []
    pusher = None
    if kind == "huggingface_hub":
        pusher = threading.Thread(target=_hfh_push_times, args=(writer, stop, hfh_pushes), daemon=True)
        pusher.start()
    result = _paced_loop(writer, config["steps_per_s"], told_to_stop, duration)
    if kind == "ours":
        writer.close()
        return {**result, **_our_run(logdir)}
    writer.scheduler.trigger().result()
    writer.scheduler.stop()
    stop.set()
    if pusher is not None:
        pusher.join(30)
    return {**result, "pushes": hfh_pushes,
            "logged_bytes": sum(p.stat().st_size for p in logdir.rglob("*tfevents*"))}


# ---------------------------------------------------------------- the parent


def _window(points: list[tuple[float, float]], start: float, end: float, last: bool) -> list[float]:
    span = (end - start) * 0.1
    lo, hi = (end - span, end + 1e9) if last else (start - 1e9, start + span)
    return [value for t, value in points if lo <= t < hi]


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    start, end = raw["start"], raw["end"]
    latencies = [(t, ns / 1e6) for t, ns in raw["latencies"][CALLS_PER_STEP:]]
    out: dict[str, Any] = {"steps": raw["steps"], "ticks_s": end - start, "raw_pushes": len(raw["pushes"])}
    for part, last in (("first", False), ("last", True)):
        lat = _window(latencies, start, end, last)
        stalls = [(t, ms) for t, ms in _window([(t, (t, ms)) for t, ms in latencies], start, end, last)
                  if ms > STALL_MS]
        pushes = _window(raw["pushes"], start, end, last)
        status = _window([(s["t"], s["status_s"]) for s in raw["samples"] if "status_s" in s], start, end, last)
        files = _window([(s["t"], s["files"]) for s in raw["samples"]], start, end, last)
        out[part] = {
            "push_ms_median": statistics.median(pushes) * 1e3 if pushes else None,
            "push_ms_mean": statistics.mean(pushes) * 1e3 if pushes else None,
            "status_ms_median": statistics.median(status) * 1e3 if status else None,
            "add_ms_p50": percentile(lat, 0.5),
            "add_ms_p99": percentile(lat, 0.99),
            "add_ms_max": max(lat, default=None),
            "add_over_5ms": len(stalls),
            "add_over_5ms_in_gc": sum(1 for t, ms in stalls if overlaps(t * 1e9, t * 1e9 + ms * 1e6, raw["gc"])),
            "hub_files_per_run_max": max(files, default=None),
        }
    out["final_hub_files_per_run"] = raw["final_files"]
    out["bytes_received_per_logged"] = raw["received"] / raw["logged_bytes"] if raw["logged_bytes"] else None
    for key in ("segments", "recover_s", "recover_commits", "recover_status", "files_in_logdir"):
        if key in raw:
            out[key] = raw[key]
    first, last = out["first"]["push_ms_median"], out["last"]["push_ms_median"]
    out["push_last_over_first"] = last / first if first and last else None
    return out


def run_writer(hub, kind: str, args: argparse.Namespace, tmp: Path, duration_s: float | None) -> dict[str, Any]:
    """One trainer, sampled from here: the Hub's file count and `status` every `SAMPLE_EVERY_S`."""
    from huggingface_hub import HfApi

    from hf_summary.status import run_status

    repo_id = f"alice/long-run-{kind.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    config = {"writer": kind, "logdir": str(tmp / f"{kind}-logs"), "repo_id": repo_id, "ticks": args.ticks,
              "tick_s": args.tick_s, "steps_per_s": args.steps_per_s, "duration_s": duration_s}
    env = trainer_env(hub)
    received = hub.stats()["bytes_received"]
    out_path = tmp / f"{kind}.json"
    process = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config), "--out", str(out_path)],
                               env=env, stdin=subprocess.PIPE, text=True)
    api = HfApi(endpoint=hub.endpoint, token=hub.token("alice"))
    folder = f"tensorboard/{Path(config['logdir']).name}" if kind == "ours" else ""
    samples = []
    stopping = False
    deadline = time.monotonic() + args.ticks * args.tick_s * 5 + 600
    try:
        while process.poll() is None and time.monotonic() < deadline:
            entry = {"t": time.monotonic(), "files": _hub_files_per_run(api, repo_id, folder)}
            logdir = Path(config["logdir"])
            if kind == "ours" and (logdir / ".hf_summary" / "journal.db").exists():
                started = time.perf_counter()
                run_status(logdir)
                entry["status_s"] = time.perf_counter() - started
                if not stopping and _rolls(logdir) >= args.ticks:
                    process.stdin.write("stop\n")
                    process.stdin.flush()
                    stopping = True
            samples.append(entry)
            time.sleep(SAMPLE_EVERY_S)
        status = process.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if status != 0:
        raise RuntimeError(f"the {kind} trainer exited with status {status}")
    raw = json.loads(out_path.read_text())
    raw["received"] = hub.stats()["bytes_received"] - received
    raw["samples"] = samples
    raw["final_files"] = _hub_files_per_run(api, repo_id, folder)
    return summarise(raw)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render(results: dict[str, dict], args: argparse.Namespace) -> str:
    head = (f"`long_run`: {args.ticks} rolls of each run dir (a tick every {args.tick_s} s after the last one ended), {args.steps_per_s:.0f} steps/s, 3 run dirs "
            "(`loss` plus `add_scalars` `pair/a`, `pair/b`), local Hub in basic-LFS mode.\n\n")
    rows = [
        ("push time, median (ms)", "push_ms_median", 1),
        ("push time, mean (ms)", "push_ms_mean", 1),
        ("`status` (ms, from the parent)", "status_ms_median", 2),
        ("`add_*` p50 (ms)", "add_ms_p50", 3),
        ("`add_*` p99 (ms)", "add_ms_p99", 3),
        ("`add_*` max (ms)", "add_ms_max", 2),
        (f"`add_*` calls over {STALL_MS:g} ms (of them during a GC)", "add_over_5ms", 0),
        ("event files per run dir on the Hub (max)", "hub_files_per_run_max", 0),
    ]
    writers = list(results)
    lines = ["| figure | " + " | ".join(f"{w} first 10% | {w} last 10%" for w in writers) + " |",
             "|---|" + "---|---|" * len(writers)]
    def cell(part: dict, key: str, digits: int) -> str:
        if key == "add_over_5ms":
            return f"{part[key]} ({part['add_over_5ms_in_gc']})"
        return _fmt(part[key], digits)

    for label, key, digits in rows:
        cells = [f"{cell(results[w]['first'], key, digits)} | {cell(results[w]['last'], key, digits)}"
                 for w in writers]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for writer, r in results.items():
        extra = (f"; segments {r['segments']}, recover with nothing to push {_fmt(r['recover_s'], 2)} s "
                 f"({r['recover_commits']} commits)" if "segments" in r else "")
        lines.append(
            f"- {writer}: push time last/first 10% = {_fmt(r['push_last_over_first'], 2)}; bytes uploaded / bytes "
            f"logged = {_fmt(r['bytes_received_per_logged'], 2)}; event files per run dir at the end = "
            f"{r['final_hub_files_per_run']}{extra}"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--tick-s", type=float, default=0.12)
    parser.add_argument("--steps-per-s", type=float, default=200.0)
    parser.add_argument("--only", choices=WRITERS, action="append")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.out.write_text(json.dumps(worker(json.loads(args.worker))))
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    from hf_summary.localhub.testing import LocalHub

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-long-run-") as tmp, \
            LocalHub(commit_limit=10_000_000) as hub:  # writers run with HF_HUB_DISABLE_XET: basic LFS
        duration_s = None if "ours" in (args.only or WRITERS) else args.ticks * args.tick_s
        for kind in args.only or WRITERS:
            print(f"long_run: {kind} ...", file=sys.stderr, flush=True)
            results[kind] = run_writer(hub, kind, args, Path(tmp), duration_s)
            duration_s = results[kind]["ticks_s"]
    emit(render(results, args), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
