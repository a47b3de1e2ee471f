"""Trainer processes for `scripts/bench.py`: one writer variant, one scenario, in a fresh interpreter.

Run as `python scripts/bench_workers.py CONFIG_JSON`; `bench.py` does this with `HF_ENDPOINT`,
`HF_TOKEN` (and `HF_HUB_DISABLE_XET`) in the environment, since huggingface_hub reads them at import
time. The config names the `scenario`, the `writer` (`none`, `tensorboardX`, `huggingface_hub` or
`ours`), the `logdir`, the `repo_id` and the scenario's sizes. The worker talks back with one JSON
object per stdout line (`{"msg": NAME, ...}`) and takes commands (`go`, `stop`, `close`) one per
stdin line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from benchkit.values import available_kinds, maker

WRITERS = ("tensorboardX", "huggingface_hub", "ours")


# ---------------------------------------------------------------- talking to bench.py


def say(msg: str, **fields: Any) -> None:
    """One JSON line on stdout (flushed at once)."""
    sys.stdout.write(json.dumps({"msg": msg, **fields}) + "\n")
    sys.stdout.flush()


def wait_for_command(expected: str) -> None:
    """Block until `expected` arrives on stdin (end of file counts as it too)."""
    for line in sys.stdin:
        if line.strip() == expected:
            return


def command_flag(expected: str) -> threading.Event:
    """An event set once `expected` arrives on stdin (read by a daemon thread)."""
    flag = threading.Event()

    def watch() -> None:
        wait_for_command(expected)
        flag.set()

    threading.Thread(target=watch, name=f"wait-{expected}", daemon=True).start()
    return flag


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM, reset at exec, unlike getrusage's ru_maxrss)."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def preimport() -> float:
    """Import what a training script has loaded before it imports a writer: numpy, and torch when installed
    (tensorboardX imports torch if it can). Returns the seconds torch took (0 if not installed)."""
    try:
        return timed(lambda: __import__("torch"))
    except ImportError:
        return 0.0


def import_all_writers() -> None:
    """Give every variant the same imports, so memory differences are the cost of logging alone."""
    for kind in WRITERS:
        import_writer(kind)


def event_bytes(logdir: str | Path) -> int:
    """Total size of the event files under `logdir` (the journal directory excluded)."""
    root = Path(logdir)
    if not root.exists():
        return 0
    return sum(p.stat().st_size for p in root.rglob("*tfevents*") if ".hf_summary" not in p.parts and p.is_file())


# ---------------------------------------------------------------- writers


def import_writer(kind: str) -> type:
    """The writer class, with everything it needs imported (huggingface_hub imports tensorboardX lazily)."""
    if kind == "tensorboardX":
        from tensorboardX import SummaryWriter

        return SummaryWriter
    if kind == "huggingface_hub":
        import tensorboardX  # noqa: F401  (their constructor would import it)
        from huggingface_hub import HFSummaryWriter

        return HFSummaryWriter
    if kind == "ours":
        from hf_summary import HFSummaryWriter

        return HFSummaryWriter
    if kind == "torch":
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    raise ValueError(f"unknown writer {kind!r}")


def open_writer(kind: str, config: dict) -> Any:
    """A writer of `kind` on `config["logdir"]`; Hub writers push to `config["repo_id"]`."""
    cls = import_writer(kind)
    if kind in ("tensorboardX", "torch"):
        return cls(config["logdir"])
    return cls(config["repo_id"], logdir=config["logdir"], commit_every=config.get("commit_every", 5))


def close_writer(kind: str, writer: Any, *, push: bool = True) -> None:
    """Close `writer`; huggingface_hub's `close()` does not push, so push and stop its scheduler."""
    writer.close()
    if kind == "huggingface_hub":
        if push:
            writer.scheduler.trigger().result()
        writer.scheduler.stop()


# ---------------------------------------------------------------- workloads


class TrainStep:
    """A CPU-bound, single-threaded stand-in for a training step: `reps` small matmuls and tanh, on the same
    inputs every step, so that its cost does not drift with the data."""

    def __init__(self, size: int, reps: int) -> None:
        rng = np.random.default_rng(0)
        self.inputs = rng.standard_normal((size, size))
        self.weights = rng.standard_normal((size, size)) * 0.01
        self.reps = reps

    def __call__(self) -> float:
        x = self.inputs
        for _ in range(self.reps):
            x = np.tanh(x @ self.weights)
        return float(x[0, 0])


def log_mixed_step(writer: Any, step: int, rng: np.random.Generator, image_size: int = 32) -> None:
    """Two scalars, a histogram of 1000 values and a small RGB image."""
    writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_scalar("train/lr", 1e-3, step)
    writer.add_histogram("weights", rng.normal(size=1000), step)
    writer.add_image("sample", rng.integers(0, 255, (3, image_size, image_size), dtype=np.uint8), step)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------- scenarios


def scenario_calibrate(config: dict) -> None:
    """Seconds per `TrainStep` rep, for bench.py to size a ~5 ms step."""
    step = TrainStep(config["matrix_size"], 20)
    step()
    samples = sorted(timed(step) for _ in range(200))
    say("calibrated", seconds_per_rep=samples[len(samples) // 10] / step.reps)  # 10th percentile: uncontended


def _children_cpu_s(children: list) -> float:
    total = 0.0
    for child in children:
        try:
            times = child.cpu_times()
        except psutil.Error:  # it ended
            continue
        total += times.user + times.system
    return total


def wait_for_quiet_children(window_s: float = 0.2, busy_share: float = 0.05, timeout_s: float = 15.0) -> None:
    """Wait (up to `timeout_s`) until this process's children together use less than `busy_share` of a CPU
    over `window_s`: a writer's uploader child importing its modules (about 0.4 s of CPU) would otherwise
    compete with the timed loop on a 2-core machine. A writer without children (tensorboardX,
    huggingface_hub's thread) passes at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = psutil.Process().children(recursive=True)
        before = _children_cpu_s(children)
        time.sleep(window_s)
        if _children_cpu_s(children) - before < busy_share * window_s:
            return


def scenario_logging_cost(config: dict) -> None:
    """`add_scalar` throughput, then a mixed workload, each on a fresh writer once its start-up work is done
    (start-up is scenario `startup`); times with and without close()."""
    kind, n_scalars, n_mixed = config["writer"], config["n_scalars"], config["n_mixed"]
    scalar_config = {**config, "logdir": config["logdir"] + "-scalars", "repo_id": config["repo_id"] + "-scalars"}
    writer = open_writer(kind, scalar_config)
    wait_for_quiet_children()

    def scalars() -> None:
        add = writer.add_scalar
        for step in range(n_scalars):
            add("loss", step * 0.5, step)

    scalar_s = timed(scalars)
    scalar_on_disk = event_bytes(scalar_config["logdir"])
    scalar_close_s = timed(lambda: close_writer(kind, writer, push=False))
    scalar_buffered = event_bytes(scalar_config["logdir"]) - scalar_on_disk

    mixed_config = {**config, "logdir": config["logdir"] + "-mixed", "repo_id": config["repo_id"] + "-mixed"}
    writer = open_writer(kind, mixed_config)
    wait_for_quiet_children()
    rng = np.random.default_rng(0)
    mixed_s = timed(lambda: [log_mixed_step(writer, step, rng) for step in range(n_mixed)])
    mixed_on_disk = event_bytes(mixed_config["logdir"])
    mixed_close_s = timed(lambda: close_writer(kind, writer, push=False))
    say(
        "result",
        kinds_us=_per_kind_us(kind, {**config, "logdir": config["logdir"] + "-kinds",
                                     "repo_id": config["repo_id"] + "-kinds"}),
        scalar_s=scalar_s, scalar_close_s=scalar_close_s, scalar_buffered_bytes=scalar_buffered,
        mixed_s=mixed_s, mixed_close_s=mixed_close_s,
        mixed_buffered_bytes=event_bytes(mixed_config["logdir"]) - mixed_on_disk,
    )


def _per_kind_us(kind: str, config: dict) -> dict[str, float | None]:
    """µs per `add_scalar` call of each kind of value (`benchkit.values`) on a settled writer, the best of
    three runs of `n_kinds` calls after as many to warm up; None where the writer refuses the kind."""
    writer = open_writer(kind, config)
    wait_for_quiet_children()
    add, n = writer.add_scalar, config["n_kinds"]
    figures: dict[str, float | None] = {}
    for value_kind in available_kinds():
        value = maker(value_kind)(0.25)
        try:
            for step in range(n):
                add(value_kind, value, step)
        except Exception:  # noqa: BLE001 - tensorboardX refuses bfloat16: no figure
            figures[value_kind] = None
            continue
        runs = [timed(lambda: [add(value_kind, value, step) for step in range(n)]) for _ in range(3)]  # noqa: B023
        figures[value_kind] = min(runs) / n * 1e6
    close_writer(kind, writer, push=False)
    return figures


class LoggedLoop:
    """The interference loop: a ~5 ms step, then (with a writer) 2 scalars and, every `histogram_every` steps,
    a histogram."""

    def __init__(self, config: dict) -> None:
        self.train_step = TrainStep(config["matrix_size"], config["reps"])
        self.histogram_every = config["histogram_every"]
        self.rng = np.random.default_rng(0)
        self.writer: Any = None
        self.step = 0

    def one_step(self) -> None:
        loss = self.train_step()
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, self.step)
            self.writer.add_scalar("train/lr", 1e-3, self.step)
            if self.step % self.histogram_every == 0:
                self.writer.add_histogram("weights", self.rng.normal(size=1000), self.step)
        self.step += 1

    def warm_up(self, steps: int, go: threading.Event | None = None) -> None:
        """At least `steps` untimed steps, and until `go` is set."""
        done = 0
        while done < steps or (go is not None and not go.is_set()):
            self.one_step()
            done += 1

    def timed(self, duration_s: float) -> list[float]:
        """Step times (ms) for `duration_s`."""
        times: list[float] = []
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            start = time.perf_counter()
            self.one_step()
            times.append((time.perf_counter() - start) * 1000)
        return times


def scenario_interference(config: dict) -> None:
    """The same loop without logging, with a writer, and without again, in one process (so the baselines see
    the same machine, imports and memory layout): `baseline_s` / `duration_s` / `baseline_s` of timed
    steps. The logged phase starts after `warmup_steps` and bench.py's `go` (sent once a Hub writer's
    first push landed, so its one-off start-up is not counted as a step cost)."""
    kind = config["writer"]
    preimport()
    import_all_writers()
    loop = LoggedLoop(config)
    go = command_flag("go")
    say("ready")
    loop.warm_up(config["warmup_steps"])
    before = loop.timed(config["baseline_s"])
    rss_without = peak_rss_mb()
    loop.writer = open_writer(kind, config)
    say("opened")
    loop.warm_up(config["warmup_steps"], go)
    say("measuring")
    logged = loop.timed(config["duration_s"])
    rss_with = peak_rss_mb()
    say("logged")
    wait_for_command("close")
    close_writer(kind, loop.writer)
    loop.writer = None
    loop.warm_up(config["warmup_steps"])
    after = loop.timed(config["baseline_s"])
    say("done", before_ms=before, logged_ms=logged, after_ms=after, peak_rss_without_mb=rss_without,
        peak_rss_with_mb=rss_with)


def scenario_amplification(config: dict) -> None:
    """Log a paced mixed workload until told to stop, push everything, report the event bytes written."""
    kind = config["writer"]
    writer = open_writer(kind, config)
    stop = command_flag("stop")
    rng = np.random.default_rng(0)
    say("ready")
    step, period = 0, 1.0 / config["steps_per_s"]
    next_step = time.monotonic()
    while not stop.is_set():
        log_mixed_step(writer, step, rng)
        step += 1
        next_step += period
        stop.wait(max(0.0, next_step - time.monotonic()))
    close_writer(kind, writer)
    say("closed", steps=step, event_bytes=event_bytes(config["logdir"]))


def scenario_crash(config: dict) -> None:
    """Log until SIGKILLed; each step is printed only after its `add_scalar` returned (acknowledged)."""
    kind = config["writer"]
    writer = open_writer(kind, config)
    rng = np.random.default_rng(0)
    say("ready")
    step = 0
    while True:
        writer.add_scalar("loss", step * 0.5, step)
        if step % 10 == 0:
            writer.add_histogram("weights", rng.normal(size=100), step)
        sys.stdout.write(f'{{"msg": "step", "step": {step}}}\n')
        sys.stdout.flush()
        step += 1
        time.sleep(config["pause_s"])


def scenario_startup(config: dict) -> None:
    """Import time and memory (numpy and torch already loaded), then constructor latency (the Hub may be down:
    huggingface_hub's writer then raises)."""
    kind = config["writer"]
    torch_s = preimport()
    rss_before = rss_mb()
    imported = {"import_s": timed(lambda: import_writer(kind)), "import_rss_mb": rss_mb() - rss_before,
                "torch_import_s": torch_s}
    start = time.perf_counter()
    try:
        writer = open_writer(kind, config)
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        say("result", **imported, constructor_s=None, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        return
    constructor_s = time.perf_counter() - start
    close_writer(kind, writer, push=False)
    say("result", **imported, constructor_s=constructor_s, error=None)


SCENARIOS: dict[str, Callable[[dict], None]] = {
    "calibrate": scenario_calibrate,
    "logging_cost": scenario_logging_cost,
    "interference": scenario_interference,
    "amplification": scenario_amplification,
    "crash": scenario_crash,
    "startup": scenario_startup,
}


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    SCENARIOS[config["scenario"]](config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
