"""Upload amplification through Xet on the local Hub: ours against `huggingface_hub.HFSummaryWriter`.

Usage::

    python scripts/bench_xet.py            # about 3 minutes on 2 cores
    python scripts/bench_xet.py --quick    # about 1 minute
    python scripts/bench_xet.py --smoke    # seconds (used by tests/test_bench_smoke.py)

1. Amplification: each writer logs the same scalars and histograms for the same time in a fresh interpreter
   with hf_xet enabled, pushing every `--commit-every` minutes, then closes. The Hub's request bytes, split
   by route (CAS, basic LFS, the rest), are divided by the event bytes written. Ours uploads each sealed
   segment once, by path, through Xet; huggingface_hub's writer re-uploads its growing event file from an
   in-memory file object at every push, which forces the legacy LFS path.
2. Grown file: an event file is uploaded through Xet, grows by about a tenth, and is uploaded again; the CAS
   bytes of the second upload are compared with the file's size and with what was appended.

Every process started here is ended by its own PID; temporary directories are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hf_summary.localhub.testing import LocalHub  # noqa: E402

WORKER = """
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    writer_kind, repo_id, logdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    duration, commit_every = float(sys.argv[4]), float(sys.argv[5])
    if writer_kind == "ours":
        from hf_summary import HFSummaryWriter
        writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=commit_every, close_timeout=300)
    else:
        from huggingface_hub import HFSummaryWriter
        writer = HFSummaryWriter(repo_id, logdir=str(logdir), commit_every=commit_every)
    rng = np.random.default_rng(0)
    step, end = 0, time.monotonic() + duration
    while time.monotonic() < end:
        writer.add_scalar("loss", 1 / (step + 1), step)
        writer.add_histogram("weights", rng.normal(size=1000), step)
        step += 1
        time.sleep(0.01)
    writer.close()
    event_bytes = sum(p.stat().st_size for p in logdir.rglob("*tfevents*") if ".hf_summary" not in p.parts)
    print(json.dumps({"steps": step, "event_bytes": event_bytes}))
"""


@dataclass(frozen=True)
class Profile:
    duration_s: float
    commit_every_min: float
    grown_mb: float


PROFILES = {
    "full": Profile(duration_s=60, commit_every_min=0.1, grown_mb=4),
    "quick": Profile(duration_s=20, commit_every_min=0.05, grown_mb=2),
    "smoke": Profile(duration_s=4, commit_every_min=0.03, grown_mb=0.5),
}


def _env(hub: LocalHub, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    return {
        **env,
        "HF_ENDPOINT": hub.endpoint,
        "HF_TOKEN": hub.token(),
        "HF_HOME": str(home / "hf_home"),
        "HF_XET_CACHE": str(home / "xet_cache"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }


def amplification(hub: LocalHub, tmp: Path, profile: Profile) -> dict[str, dict]:
    """Per writer: event bytes, request bytes by route and the ratios."""
    results = {}
    for kind in ("ours", "huggingface_hub"):
        before = hub.stats()["bytes_received_by_route"]
        command = [sys.executable, "-c", textwrap.dedent(WORKER), kind, f"alice/amplification-{kind}",
                   str(tmp / kind / "logs"), str(profile.duration_s), str(profile.commit_every_min)]
        process = subprocess.Popen(command, env=_env(hub, tmp / kind), stdout=subprocess.PIPE, text=True)
        try:
            out, _ = process.communicate(timeout=profile.duration_s + 600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise RuntimeError(f"the {kind} writer failed (exit {process.returncode}); see its stderr above")
        run = json.loads(out.strip().splitlines()[-1])
        after = hub.stats()["bytes_received_by_route"]
        sent = {route: after[route] - before[route] for route in after}
        events = run["event_bytes"]
        results[kind] = {
            "event_bytes": events,
            "sent": sent,
            "cas_per_event_byte": sent["cas"] / events,
            "lfs_per_event_byte": sent["lfs"] / events,
            "total_per_event_byte": sum(sent.values()) / events,
        }
    return results


def grown_file(hub: LocalHub, tmp: Path, profile: Profile) -> dict[str, float]:
    """CAS bytes for re-uploading an event file that grew by about a tenth."""
    os.environ.update({k: v for k, v in _env(hub, tmp / "grown").items() if k.startswith("HF_")})
    os.environ.pop("HF_HUB_DISABLE_XET", None)
    import numpy as np
    from huggingface_hub import HfApi
    from tensorboardX import SummaryWriter

    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    api.create_repo("alice/grown-file")
    logdir = tmp / "grown" / "logs"
    writer = SummaryWriter(str(logdir))
    rng = np.random.default_rng(1)
    step = 0

    def log_until(size: float) -> Path:
        nonlocal step
        while True:
            writer.add_histogram("weights", rng.normal(size=1000), step)
            writer.add_scalar("loss", 1 / (step + 1), step)
            step += 1
            if step % 50 == 0:
                writer.flush()
                [path] = logdir.glob("*tfevents*")
                if path.stat().st_size >= size:
                    return path

    target = profile.grown_mb * 1e6
    path = log_until(target)
    before = hub.stats()["bytes_received_by_route"]["cas"]
    api.upload_file(path_or_fileobj=str(path), path_in_repo="events", repo_id="alice/grown-file")
    first_sent = hub.stats()["bytes_received_by_route"]["cas"] - before
    first_size = path.stat().st_size
    path = log_until(first_size * 1.1)
    writer.close()
    before = hub.stats()["bytes_received_by_route"]["cas"]
    api.upload_file(path_or_fileobj=str(path), path_in_repo="events", repo_id="alice/grown-file")
    sent = hub.stats()["bytes_received_by_route"]["cas"] - before
    size = path.stat().st_size
    return {"file_bytes": size, "appended_bytes": size - first_size, "first_cas_bytes": first_sent, "cas_bytes": sent,
            "cas_per_file_byte": sent / size, "cas_per_appended_byte": sent / (size - first_size)}


def report(amp: dict[str, dict], grown: dict[str, float]) -> str:
    lines = ["| writer | event MB | CAS MB | LFS MB | other MB | CAS / event | all / event |",
             "|---|---|---|---|---|---|---|"]
    for kind, r in amp.items():
        mb = {route: n / 1e6 for route, n in r["sent"].items()}
        lines.append(f"| {kind} | {r['event_bytes'] / 1e6:.2f} | {mb['cas']:.2f} | {mb['lfs']:.2f} | {mb['other']:.2f} "
                     f"| {r['cas_per_event_byte']:.2f} | {r['total_per_event_byte']:.2f} |")
    ratio = amp["huggingface_hub"]["total_per_event_byte"] / amp["ours"]["total_per_event_byte"]
    lines.append(f"\nhuggingface_hub / ours (all request bytes per event byte): {ratio:.1f}x")
    lines.append(f"Grown file: {grown['file_bytes'] / 1e6:.2f} MB ({grown['appended_bytes'] / 1e6:.2f} MB appended; "
                 f"its first upload sent {grown['first_cas_bytes'] / 1e6:.3f} MB) "
                 f"re-uploaded with {grown['cas_bytes'] / 1e6:.3f} MB to the CAS: "
                 f"{grown['cas_per_file_byte']:.3f} per file byte, {grown['cas_per_appended_byte']:.2f} per appended byte")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="shorter runs")
    group.add_argument("--smoke", action="store_true", help="minimal runs, to check that the benchmark works")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hf-summary-bench-xet-") as tmp, LocalHub() as hub:
        amp = amplification(hub, Path(tmp), profile)
        grown = grown_file(hub, Path(tmp), profile)
    print(report(amp, grown))
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"amplification": amp, "grown_file": grown}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
