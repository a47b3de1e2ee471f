"""`hf-summary demo`: a short numpy "training" logged with HFSummaryWriter, then checked against the Hub.

With no Hub configured (no ``HF_ENDPOINT`` and no token) it starts the local Hub in a temporary directory, so
it runs on a machine with no network at all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hf_summary.hub import RepoClient
from hf_summary.verify import count_events
from hf_summary.writer import HFSummaryWriter

DEMO_USER, DEMO_TOKEN = "demo", "hf_demo_local_token"


@dataclass
class DemoResult:
    endpoint: str
    repo_id: str
    commits: list[str]
    logged: int
    on_hub: int
    token: str | None
    path_in_repo: str
    workdir: Path  # scratch space that lives as long as the Hub the demo used (until run_demo returns)


@contextlib.contextmanager
def _hub(say: Callable[[str], None]) -> Iterator[tuple[str | None, str | None, str]]:
    """(endpoint, token, namespace) of the configured Hub, or of a local Hub started for the demo."""
    from huggingface_hub import get_token

    token = get_token()
    if os.environ.get("HF_ENDPOINT") or token:
        from huggingface_hub import whoami

        yield os.environ.get("HF_ENDPOINT"), token, whoami(token=token)["name"]
        return
    from hf_summary.localhub.testing import LocalHub

    with LocalHub(users={DEMO_USER: DEMO_TOKEN}) as hub:
        say(f"No Hub configured: started the local Hub at {hub.endpoint} (data in {hub.data_dir})")
        yield hub.endpoint, DEMO_TOKEN, DEMO_USER


def _train(writer: HFSummaryWriter, steps: int) -> None:
    """Linear regression by gradient descent, logging scalars, a histogram, an image and text."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(256, 8))
    target = features @ rng.normal(size=8) + 0.1 * rng.normal(size=256)
    weights = np.zeros(8)
    for step in range(steps):
        error = features @ weights - target
        weights -= 0.05 * features.T @ error / len(target)
        writer.add_scalar("train/loss", float(np.mean(error**2)), step)
        writer.add_scalar("train/weight_norm", float(np.linalg.norm(weights)), step)
        if step % 20 == 0:
            writer.add_histogram("weights", weights, step)
            image = np.clip((weights - weights.min()) / (np.ptp(weights) or 1.0), 0, 1)
            writer.add_image("weights_image", np.tile(image, (3, 8, 1)), step)
    writer.add_text("summary", f"final loss {float(np.mean((features @ weights - target) ** 2)):.4f}", steps)


def run_demo(
    *,
    steps: int = 200,
    say: Callable[[str], None] = print,
    then: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Train, push and count. ``then`` is called with the result while the demo's Hub still runs (e.g. to
    view the run); it may block until the user interrupts it."""
    with _hub(say) as (endpoint, token, namespace), tempfile.TemporaryDirectory(prefix="hf-summary-demo-") as tmp:
        if endpoint is not None:
            os.environ["HF_ENDPOINT"] = endpoint
        repo_id = f"{namespace}/hf-summary-demo"
        logdir = Path(tmp) / "demo-run"
        say(f"Training for {steps} steps, logging to {logdir} and pushing to {repo_id}")
        with HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.05, token=token) as writer:
            _train(writer, steps)
            writer.push_to_hub()
            _train(writer, steps)  # a second phase, pushed on exit
        client = RepoClient(repo_id=repo_id, endpoint=endpoint, token=token)
        downloaded = client.download("tensorboard/demo-run", Path(tmp) / "from-hub")
        result = DemoResult(
            endpoint=client.endpoint,
            repo_id=repo_id,
            commits=[f"{c.oid[:10]} {c.title}" for c in client.commits()],
            logged=count_events(logdir),
            on_hub=count_events(downloaded / "tensorboard" / "demo-run"),
            token=token,
            path_in_repo="tensorboard",
            workdir=Path(tmp),
        )
        if then is not None:
            then(result)
        return result
