"""`scripts/bench.py --smoke` (and `scripts/bench_xet.py --smoke`) run every scenario at minimal size and write
every figure, so the benchmarks cannot rot unnoticed. Figures are checked for shape only (the numbers of a tiny run mean nothing)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITERS = ("ours", "tensorboardX", "huggingface_hub")
ALL, HUB, OURS = WRITERS, ("ours", "huggingface_hub"), ("ours",)

# scenario -> {figure: writers that must have a number (the others may be null: not applicable)}
FIGURES = {
    "logging_cost": {
        "scalar_events_per_s": ALL,
        "scalar_events_per_s_incl_close": ALL,
        "mixed_steps_per_s": ALL,
        "mixed_steps_per_s_incl_close": ALL,
        "user_space_buffered_bytes": ALL,
    },
    "interference": {
        "step_ms_p50": ALL,
        "step_ms_p99": ALL,
        "step_ms_max": ALL,
        "ratio_p50_vs_no_logging": ALL,
        "ratio_p99_vs_no_logging": ALL,
        "ratio_p50_vs_no_logging_max": ALL,
        "steps": ALL,
        "commits_during_run": HUB,
    },
    "amplification": {"amplification_lfs": HUB, "commits_lfs": HUB, "event_mb_lfs": HUB, "received_mb_lfs": HUB},
    "crash_loss": {"lost_events": ALL, "lost_events_max": ALL, "acknowledged_events": ALL, "lost_fraction": ALL},
    "time_to_hub_s": {"seconds": OURS, "seconds_max": OURS, "seconds_polled_max": OURS},
    "startup_s": {
        "import_s": ALL,
        "import_rss_mb": ALL,
        "constructor_hub_up_s": ALL,
        "constructor_hub_down_s": OURS,  # huggingface_hub's constructor raises; tensorboardX has no Hub
    },
    "memory_mb": {"trainer_peak_rss_mb": ALL, "trainer_added_peak_rss_mb": ALL, "uploader_peak_rss_mb": OURS},
}
RATIOS = {
    "logging_cost": [
        "ratio_scalar_ours_vs_tensorboardX", "ratio_scalar_ours_vs_huggingface_hub",
        "ratio_mixed_ours_vs_tensorboardX", "ratio_mixed_ours_vs_huggingface_hub",
    ],
    "amplification": ["ratio_lfs_huggingface_hub_vs_ours"],
}
SCALARS = {
    "interference": ["baseline_step_ms_p50", "baseline_step_ms_p99"],
    "memory_mb": ["baseline_trainer_peak_rss_mb"],
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--smoke", "--seed", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    return json.loads(out.read_text()), result.stdout


@pytest.mark.parametrize("scenario", sorted(FIGURES))
def test_every_figure_is_a_number(smoke: tuple[dict, str], scenario: str) -> None:
    document, _ = smoke
    for figure, required in FIGURES[scenario].items():
        values = document[scenario][figure]
        assert set(values) == set(WRITERS), (scenario, figure, values)
        for writer in WRITERS:
            value = values[writer]
            if writer in required:
                assert _is_number(value), (scenario, figure, writer, value)
            else:
                assert value is None or _is_number(value), (scenario, figure, writer, value)
    for key in RATIOS.get(scenario, []):
        assert _is_number(document[scenario][key]), (scenario, key)
    for key in SCALARS.get(scenario, []):
        assert _is_number(document[scenario][key]), (scenario, key)


def test_logging_cost_times_each_kind_of_scalar(smoke: tuple[dict, str]) -> None:
    """Floats, numpy scalars and arrays (and tensors where torch is) per writer; bfloat16 only where it is taken."""
    document, stdout = smoke
    per_kind = document["logging_cost"]["add_scalar_us_per_kind"]
    assert {"float", "numpy", "numpy_0d"} <= set(per_kind)
    for kind, figures in per_kind.items():
        assert _is_number(figures["ours"]) and _is_number(figures["ratio_tensorboardX_vs_ours"]) != (
            kind == "bfloat16"), (kind, figures)
    assert "| `numpy.float32` |" in stdout


def test_machine_facts_errors_and_table(smoke: tuple[dict, str]) -> None:
    document, stdout = smoke
    machine = document["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"] and machine["date"]
    assert {"hf-summary", "tensorboardX", "huggingface_hub"} <= set(machine["packages"])
    assert document["errors"] == {}
    assert document["profile"]["name"] == "smoke"
    for heading in ("1. logging cost", "2. training interference", "3. upload amplification", "4. crash loss",
                    "5. time to Hub after SIGKILL", "6. start-up", "7. memory"):
        assert f"| {heading} |" in stdout


def test_preemption_bench_runs_and_ours_loses_nothing(tmp_path: Path) -> None:
    """`scripts/bench_preemption.py`, one round: every figure there, and our writer lost no event."""
    out = tmp_path / "preemption.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_preemption.py"), "--rounds", "1", "--seed", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    assert document["errors"] == {}
    for figure in ("lost_events", "lost_events_max", "acknowledged_events"):
        assert all(_is_number(document[figure][writer]) for writer in WRITERS), (figure, document[figure])
    assert document["lost_events_max"]["ours"] == 0
    assert _is_number(document["seconds_to_hub"]["ours"])
    assert "| acknowledged events lost" in result.stdout


def test_sweep_bench_runs_and_ours_loses_nothing(tmp_path: Path) -> None:
    """`scripts/bench_sweep.py --smoke`: every figure for both writers, and ours has every acknowledged event on
    the Hub in the end."""
    out = tmp_path / "sweep.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_sweep.py"), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    rounds = json.loads(out.read_text())["rounds"]
    for writer in ("ours", "huggingface_hub"):
        figures = rounds[f"{writer}/2"]
        for figure in ("commits", "acknowledged_events", "events_on_hub_before_sigkill", "events_on_hub_later",
                       "seconds_at_risk_per_job", "seconds_lost_per_job"):
            assert _is_number(figures[figure]), (writer, figure, figures)
    assert rounds["ours/2"]["events_on_hub_later"] >= rounds["ours/2"]["acknowledged_events"]
    assert rounds["ours/2"]["seconds_lost_per_job"] == 0
    assert "| 2 | ratio ours / huggingface_hub |" in result.stdout


def test_long_run_bench_runs_and_bounds_files(tmp_path: Path) -> None:
    """`scripts/bench_long_run.py` at minimal size: every figure there for both writers; ours merged files."""
    out = tmp_path / "long_run.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_long_run.py"), "--ticks", "20", "--tick-s", "0.1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    assert set(document) == {"ours", "huggingface_hub"}
    for writer, figures in document.items():
        assert _is_number(figures["bytes_received_per_logged"]), writer
        assert _is_number(figures["last"]["add_ms_p99"]), writer
    ours = document["ours"]
    assert ours["segments"] >= 20 * 3 and ours["recover_status"] == 0 and ours["recover_commits"] == 0
    assert ours["final_hub_files_per_run"] < 20
    assert "| event files per run dir on the Hub (max) |" in result.stdout


def test_xet_benchmark_smoke(tmp_path: Path) -> None:
    """`scripts/bench_xet.py --smoke`: both writers measured through the Hub's default (Xet) path."""
    out = tmp_path / "bench_xet.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_xet.py"), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench_xet failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    ours, theirs = document["amplification"]["ours"], document["amplification"]["huggingface_hub"]
    assert ours["sent"]["cas"] > 0 and ours["sent"]["lfs"] == 0  # ours goes through Xet
    assert theirs["sent"]["lfs"] > 0  # in-memory file objects: legacy LFS
    grown = document["grown_file"]
    assert 0 < grown["cas_bytes"] < grown["first_cas_bytes"]
    assert "| ours |" in result.stdout and "Grown file:" in result.stdout


def test_status_bench_runs_and_status_never_scans_a_table(tmp_path: Path) -> None:
    """`scripts/bench_status.py` at minimal size: every figure of both runs, and no statement of `status` reads a
    whole table (each one searches an index)."""
    out = tmp_path / "bench_status.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_status.py"), "--days", "2", "--ticks-per-day", "12",
         "--runs", "2", "--reps", "1", "--window", "5", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    for label in ("day_1", "day_2"):
        figures = document[label]
        for key in ("status_cli_s", "recover_cli_s"):
            assert _is_number(figures[key]["median_s"]), (label, key)
        for key in ("push_planning_ms", "push_planning_full_walk_ms", "journal_mb"):
            assert _is_number(figures[key]), (label, key)
        assert _is_number(figures["status_in_process_s"]["median_s"]), label
        assert figures["status_queries"]["plans"] and figures["status_queries"]["scans"] == [], label
    assert document["day_2"]["segments"] == 2 * document["day_1"]["segments"] == 2 * 2 * 12
    assert "| `hf-summary status` CLI, median (s) |" in result.stdout


def test_add_latency_bench_runs_every_writer(tmp_path: Path) -> None:
    """`scripts/bench_add_latency.py`, one short round: percentiles of every writer, and ours rolled meanwhile."""
    out = tmp_path / "add_latency.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_add_latency.py"), "--rounds", "1", "--duration-s", "1.5",
         "--tick-s", "0.2", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    writers = {"none", "tensorboardX", "ours", "ours_no_roll"} | ({"torch"} if find_spec("torch") else set())
    kinds = ["numpy", "numpy_0d", *(["tensor", "bfloat16"] if find_spec("torch") else [])]
    variants = {f"{writer}/{kind}" for kind in kinds for writer in ("tensorboardX", "torch", "ours") if writer in writers}
    assert set(document) == writers | variants - {"tensorboardX/bfloat16"}
    for writer, rounds in document.items():
        (figures,) = rounds
        for method in ("add_scalar", "add_scalars", "all"):
            assert all(_is_number(figures[method][key]) for key in ("p50", "p99", "p99_9", "max")), (writer, method)
        assert figures["steps"] > 100, writer
    assert document["ours"][0]["rolls"] >= 3
    assert "| `add_scalar` p99 |" in result.stdout and "ours / tensorboardX" in result.stdout
    assert "| `numpy.float32` |" in result.stdout


def test_disk_full_bench_runs_and_ours_survives(tmp_path: Path) -> None:
    """`scripts/bench_disk_full.py`, a 2 s episode: every writer has its row; ours raised nothing, lost nothing,
    survived and did not hang."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("bench_disk_full mounts a tmpfs per writer: needs root and mount(8)")
    out = tmp_path / "disk_full.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_disk_full.py"), "--before-s", "1", "--full-s", "2",
         "--after-s", "1", "--hang-s", "20", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    assert set(document) == set(WRITERS)
    for writer, figures in document.items():
        assert isinstance(figures["survived"], bool) and isinstance(figures["hung"], bool), writer
    ours = document["ours"]
    assert ours["survived"] and not ours["hung"] and ours["raised"] == 0 and ours["lost"] == 0, ours
    assert _is_number(ours["longest_add_s"]) and ours["acknowledged"] > 0
    assert "| exceptions raised into the loop |" in result.stdout


def test_watch_long_run_bench_runs_and_bounds_files_and_disk(tmp_path: Path) -> None:
    """`scripts/bench_watch_long_run.py` at minimal size, tensorboardX's writer through basic LFS and Xet: every
    figure there; the copies merged on the Hub, never a merge staged on disk, and no copy left once pushed."""
    out = tmp_path / "watch_long_run.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_watch_long_run.py"), "--ticks", "40", "--tick-s", "0.1",
         "--only", "tbx", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    assert set(document) == {"tbx/lfs", "tbx/xet"}
    for name, figures in document.items():
        assert figures["ticks"] >= 40 and _is_number(figures["bytes_received_per_logged"]), name
        assert _is_number(figures["last"]["push_ms_median"]), name
        assert figures["final_hub_files_per_run"] < figures["ticks"] - 2 * 7, name  # copies merged (2 of 8 at least)
        final, peak = figures["disk_beyond_sources_final"], figures["disk_beyond_sources_max"]
        assert final["copies"] == final["staged"] == 0, name  # everything pushed: no copy left on disk
        assert peak["staged"] == 0, name  # merges go up as byte ranges of the sources, never staged
        assert figures["disk_beyond_sources_during_merges_max"]["total"] <= peak["total"], name
    assert "| tbx/lfs | " in result.stdout


def test_shared_fs_bench_runs_both_sides(tmp_path: Path) -> None:
    """`scripts/bench_shared_fs.py` at minimal size: every figure of both sides (needs the two emulated hosts)."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from twohosts import SKIP_REASON

    if SKIP_REASON is not None:
        pytest.skip(f"two emulated hosts: {SKIP_REASON}")
    out = tmp_path / "shared_fs.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_shared_fs.py"), "--runs", "2", "--status-runs", "4",
         "--steps", "120", "--reps", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    for side in ("local", "shared"):
        figures = document[side]
        assert figures["sync"]["commits"] >= 2 and figures["sync_again"]["commits"] == 0, figures  # one per run (+ card)
        assert all(_is_number(figures[key]["seconds"]) for key in ("sync", "sync_again"))
        assert _is_number(figures["status_s"]) and _is_number(figures["writer"]["add_p99_us"])
        assert figures["writer"]["ok"] is True
    assert "| status over 4 runs" in result.stdout


def test_status_latency_bench_runs_both_sides(tmp_path: Path) -> None:
    """`scripts/bench_status_latency.py` at minimal size: status one journal at a time and several at once, on the
    slow FUSE passthrough (skipped where it cannot be mounted: the bench exits 2 and says why)."""
    out = tmp_path / "status_latency.json"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench_status_latency.py"), "--runs", "6", "--latency-ms", "0.2",
         "--reps", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    if result.returncode == 2:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, f"bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-5000:]}"
    document = json.loads(out.read_text())
    assert _is_number(document["one_at_a_time_s"]) and _is_number(document["at_once_s"]), document
    assert "| status over 6 runs, 0.2 ms a call |" in result.stdout
