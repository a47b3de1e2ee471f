"""`hf-summary demo`: a short numpy "training" logged with HFSummaryWriter, then checked against the Hub.

With no Hub configured (no `HF_ENDPOINT` and no token) it starts the local Hub in a temporary directory, so
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


class _Regression:
    """Linear regression by gradient descent; its weights carry over from one phase of training to the next."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.features = rng.normal(size=(256, 8))
        self.target = self.features @ rng.normal(size=8) + 0.1 * rng.normal(size=256)
        self.weights = np.zeros(8)

    def loss(self) -> float:
        return float(np.mean((self.features @ self.weights - self.target) ** 2))

    def train(self, writer: HFSummaryWriter, steps: range) -> None:
        """Train over `steps`, logging scalars, a histogram, an image and text (one series per tag)."""
        for step in steps:
            error = self.features @ self.weights - self.target
            self.weights -= 0.05 * self.features.T @ error / len(self.target)
            writer.add_scalar("train/loss", float(np.mean(error**2)), step)
            writer.add_scalar("train/weight_norm", float(np.linalg.norm(self.weights)), step)
            if step % 20 == 0:
                writer.add_histogram("weights", self.weights, step)
                image = np.clip((self.weights - self.weights.min()) / (np.ptp(self.weights) or 1.0), 0, 1)
                writer.add_image("weights_image", np.tile(image, (3, 8, 1)), step)
        writer.add_text("summary", f"loss {self.loss():.4f} after step {steps[-1]}", steps[-1])


def run_demo(
    *,
    steps: int = 200,
    say: Callable[[str], None] = print,
    then: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Train for `2 * steps` steps in two phases (a push after the first), then count the events on the Hub.
    `then` is called with the result while the demo's Hub still runs (e.g. to view the run); it may block until
    the user interrupts it."""
    with _hub(say) as (endpoint, token, namespace), tempfile.TemporaryDirectory(prefix="hf-summary-demo-") as tmp:
        if endpoint is not None:
            os.environ["HF_ENDPOINT"] = endpoint
        repo_id = f"{namespace}/hf-summary-demo"
        logdir = Path(tmp) / "demo-run"
        say(f"Training for steps 0-{2 * steps - 1} in two phases, logging to {logdir} and pushing to {repo_id}")
        model = _Regression()
        with HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.05, token=token) as writer:
            model.train(writer, range(steps))
            writer.push_to_hub()  # the first phase is on the Hub; the second continues its steps
            model.train(writer, range(steps, 2 * steps))  # pushed on exit
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
