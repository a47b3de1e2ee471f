"""Benchmark `watch_long_run`: `hf-summary watch` on a foreign writer rolling for thousands of ticks, against
the local Hub, through basic LFS and through Xet.

The foreign trainer (a fresh interpreter) logs without hf-summary: tensorboardX's own `SummaryWriter` (`tbx`),
and Keras 3's `TensorBoard` callback in `model.fit` (`keras`, when Keras is installed), each into `train/`
and `validation/`, flushing as often as the watcher ticks, so both run dirs grow at every tick. Beside it runs
`hf-summary watch` (its own process and uploader, as a user starts it) with a tick of `--tick-s`.

Reported: for the first and the last 10% of the ticks, the push time of each copy (copied to committed) and the
event files per run folder on the Hub; for the whole run, the most files any run folder held on the Hub, the
bytes on disk beyond the foreign files (the journal apart: the copies not pushed yet, staged merges, and the
uploader's hf_xet scratch), sampled every `DISK_EVERY_S` s, their peak over the samples taken while a merge
was being pushed (planned, not yet committed) and at the end, and the bytes the Hub received per byte logged.

Usage::

    python scripts/bench_watch_long_run.py                    # 2,000 ticks, tbx (and keras) x (lfs, xet)
    python scripts/bench_watch_long_run.py --ticks 200 --only tbx --transport lfs

Every process started here is ended by its own pid; temporary directories are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench_long_run import _fmt, _hub_files_per_run
from benchkit.output import emit
from benchkit.trainer import trainer_env

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hf_summary.journal import Journal  # noqa: E402
from hf_summary.tailcopy import CopyName  # noqa: E402

WRITERS = ("tbx", "keras")
TRANSPORTS = ("lfs", "xet")
SAMPLE_EVERY_S = 0.5  # Hub listings
DISK_EVERY_S = 0.05  # disk and merge state: often enough to catch merges in flight
DISK_PARTS = {"copies": "watch", "staged": "compaction", "scratch": "xet"}  # under LOGDIR/.hf_summary

# The foreign trainer: logs until a line arrives on stdin, then closes its writers and prints "closed".
TRAINER = """
    import os, sys, threading, time
    import numpy as np
    logdir, writer_kind, flush_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    if writer_kind == "tbx":
        from tensorboardX import SummaryWriter
        writers = {run: SummaryWriter(os.path.join(logdir, run), flush_secs=1) for run in ("train", "validation")}
        rng, step = np.random.default_rng(0), 0
        while not stop.is_set():
            writers["train"].add_scalar("loss", 1 / (step + 1), step)
            writers["train"].add_histogram("weights", rng.normal(size=100), step)
            writers["validation"].add_scalar("loss", 2 / (step + 1), step)
            for writer in writers.values():
                writer.flush()
            step += 1
            time.sleep(flush_s / 4)
        for writer in writers.values():
            writer.close()
    else:
        import keras
        x, y = np.random.default_rng(0).normal(size=(2, 16, 4)).astype("float32")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        model.compile(optimizer="sgd", loss="mse")

        class Until(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = stop.is_set()
                time.sleep(flush_s / 4)

        board = keras.callbacks.TensorBoard(logdir, histogram_freq=1, update_freq="batch")
        model.fit(x[:8], y[:8], validation_data=(x[8:], y[8:]), batch_size=4, epochs=10**9, verbose=0,
                  callbacks=[board, Until()])
    print("closed", flush=True)
"""


def _ticks(logdir: Path) -> int:
    """Copies taken of the busiest foreign file (merged or not): the watcher's ticks that found it grown."""
    try:
        with Journal(logdir, create=False) as journal:
            rows = journal.db.execute("SELECT run, name FROM segments WHERE run LIKE '.hf_summary/watch/%'").fetchall()
    except FileNotFoundError:
        return 0
    per_source = Counter(run for run, name in rows if (copy := CopyName.parse(name)) and not copy.merged)
    return max(per_source.values(), default=0)


def _disk_beyond_sources(logdir: Path) -> dict[str, int]:
    """Bytes under the journal's directory other than the journal, by part (`DISK_PARTS`), and `total`."""
    parts = dict.fromkeys(DISK_PARTS, 0)
    for part, sub in DISK_PARTS.items():
        for dirpath, _, names in os.walk(logdir / ".hf_summary" / sub):
            for name in names:
                with contextlib.suppress(FileNotFoundError):  # removed by the watcher since the listing
                    parts[part] += os.stat(os.path.join(dirpath, name)).st_size
    return {**parts, "total": sum(parts.values())}


def _merging(logdir: Path) -> bool:
    """Whether a merge is being pushed: planned, not yet committed."""
    try:
        with Journal(logdir, create=False) as journal:
            return bool(journal.compactions("planned"))
    except FileNotFoundError:
        return False


def _pushes(logdir: Path) -> list[tuple[float, float]]:
    """(copied at, seconds to the commit) of every copy the Hub took, merged away or not."""
    with Journal(logdir, create=False) as journal:
        rows = [row for row in journal.segments() if row.level == 0 and row.committed_at and row.sealed_at]
    return [(row.sealed_at, row.committed_at - row.sealed_at) for row in rows]


def _window(points: list[tuple[float, float]], last: bool) -> list[float]:
    if not points:
        return []
    start, end = min(t for t, _ in points), max(t for t, _ in points)
    span = (end - start) * 0.1
    return [value for t, value in points if (t >= end - span if last else t <= start + span)]


def run_one(hub, writer: str, transport: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One foreign trainer and its watcher, sampled from here until the watcher ticked `args.ticks` times."""
    from huggingface_hub import HfApi

    repo_id = f"alice/watch-long-{writer}-{transport}-{uuid.uuid4().hex[:6]}"
    logdir = tmp / f"{writer}-{transport}"
    logdir.mkdir()
    env = trainer_env(hub)
    if transport == "xet":
        env.pop("HF_HUB_DISABLE_XET")
        env["HF_XET_CACHE"] = str(tmp / f"xet-cache-{writer}")
    received = hub.stats()["bytes_received"]
    trainer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(TRAINER), str(logdir), writer, str(args.tick_s)],
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watcher = subprocess.Popen([sys.executable, "-m", "hf_summary", "watch", str(logdir), "--repo-id", repo_id,
                                "--commit-every", str(args.tick_s / 60), "--pid", str(trainer.pid)], env=env)
    api = HfApi(endpoint=hub.endpoint, token=hub.token("alice"))
    samples: list[dict[str, Any]] = []
    disk: list[tuple[bool, dict[str, int]]] = []  # (merging, bytes by part)
    deadline = time.monotonic() + args.ticks * args.tick_s * 10 + 600
    next_listing = 0.0
    try:
        while (ticks := _ticks(logdir)) < args.ticks and time.monotonic() < deadline and watcher.poll() is None:
            if time.monotonic() >= next_listing:
                samples.append({"t": time.time(), "files": _hub_files_per_run(api, repo_id, "")})
                next_listing = time.monotonic() + SAMPLE_EVERY_S
            merging = _merging(logdir)
            disk.append((merging, _disk_beyond_sources(logdir)))
            time.sleep(DISK_EVERY_S)
        trainer.stdin.write("stop\n")
        trainer.stdin.flush()
        trainer.wait(120)
        status = watcher.wait(600)  # the trainer (its --pid) is gone: it copies what is left, pushes, exits
    finally:
        for process in (trainer, watcher):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
    if status != 0 or ticks < args.ticks:
        raise RuntimeError(f"{writer}/{transport}: watcher status {status} after {ticks} of {args.ticks} ticks")
    logged = sum(path.stat().st_size for path in logdir.rglob("*tfevents*") if ".hf_summary" not in path.parts)
    pushes = _pushes(logdir)
    files = [(s["t"], s["files"]) for s in samples]
    return {
        "ticks": ticks,
        "logged_bytes": logged,
        "bytes_received_per_logged": (hub.stats()["bytes_received"] - received) / logged,
        "first": {"push_ms_median": _median_ms(_window(pushes, last=False)),
                  "hub_files_per_run_max": max(_window(files, last=False), default=None)},
        "last": {"push_ms_median": _median_ms(_window(pushes, last=True)),
                 "hub_files_per_run_max": max(_window(files, last=True), default=None)},
        "hub_files_per_run_max": max((s["files"] for s in samples), default=0),
        "final_hub_files_per_run": _hub_files_per_run(api, repo_id, ""),
        "disk_beyond_sources_max": _peak(part for _, part in disk),
        "disk_beyond_sources_during_merges_max": _peak(part for merging, part in disk if merging),
        "merge_samples": sum(merging for merging, _ in disk),
        "disk_beyond_sources_final": _disk_beyond_sources(logdir),
        "journal_bytes": (logdir / ".hf_summary" / "journal.db").stat().st_size,
    }


def _peak(samples: Any) -> dict[str, int]:
    """Per part, the most bytes any sample saw (`total`: the most at once)."""
    peak = dict.fromkeys([*DISK_PARTS, "total"], 0)
    for sample in samples:
        peak = {part: max(peak[part], sample[part]) for part in peak}
    return peak


def _median_ms(values: list[float]) -> float | None:
    return statistics.median(values) * 1e3 if values else None


def render(results: dict[str, dict], args: argparse.Namespace) -> str:
    head = (f"`watch_long_run`: `hf-summary watch` ticking every {args.tick_s} s for {args.ticks} ticks on a foreign "
            "writer whose `train/` and `validation/` grow at every tick; local Hub.\n\n")
    lines = ["| writer / transport | ticks | push ms first 10% | push ms last 10% | last/first | Hub files per run "
             "folder first / last 10% (max over the run) | disk beyond the sources, bytes: max / max during a merge push "
             "(samples) / final | of which copies / staged merges / hf_xet scratch (max) | uploaded / logged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        first, last = r["first"]["push_ms_median"], r["last"]["push_ms_median"]
        ratio = last / first if first and last else None
        peak, during = r["disk_beyond_sources_max"], r["disk_beyond_sources_during_merges_max"]
        lines.append(
            f"| {name} | {r['ticks']} | {_fmt(first)} | {_fmt(last)} | {_fmt(ratio, 2)} | "
            f"{_fmt(r['first']['hub_files_per_run_max'])} / {_fmt(r['last']['hub_files_per_run_max'])} "
            f"({r['hub_files_per_run_max']}) | {peak['total']} / {during['total']} ({r['merge_samples']}) / "
            f"{r['disk_beyond_sources_final']['total']} | {peak['copies']} / {peak['staged']} / {peak['scratch']} | "
            f"{_fmt(r['bytes_received_per_logged'], 2)} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--tick-s", type=float, default=0.12)
    parser.add_argument("--only", choices=WRITERS, action="append")
    parser.add_argument("--transport", choices=TRANSPORTS, action="append")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    writers = args.only or [w for w in WRITERS if w != "keras" or importlib.util.find_spec("keras")]
    from hf_summary.localhub.testing import LocalHub

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-watch-long-run-") as tmp, LocalHub(commit_limit=10_000_000) as hub:
        for writer in writers:
            for transport in args.transport or TRANSPORTS:
                print(f"watch_long_run: {writer} / {transport} ...", file=sys.stderr, flush=True)
                results[f"{writer}/{transport}"] = result = run_one(hub, writer, transport, args, Path(tmp))
                print(f"watch_long_run: {writer} / {transport}: {result}", file=sys.stderr, flush=True)
    emit(render(results, args), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    sys.exit(main())
