"""A tiny accelerate training loop on CPU for the plug-in tests: ``python accelerate_job.py '<json config>'``
(or under ``torch.distributed.run`` for several processes). It logs through ``log_with="hf_summary"``."""

from __future__ import annotations

import json
import sys

import torch
from accelerate import Accelerator

import hf_summary.integrations.accelerate  # noqa: F401  (registers "hf_summary")


def main(config: dict) -> None:
    torch.manual_seed(0)
    accelerator = Accelerator(log_with="hf_summary", project_dir=config["project_dir"], cpu=True)
    accelerator.init_trackers(
        "proj", config={"lr": 0.1, "optimizer": "sgd"},
        init_kwargs={"hf_summary": {"repo_id": config["repo_id"], "commit_every": 60}},
    )
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    for step in range(config["steps"]):
        loss = torch.nn.functional.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 1))
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        accelerator.log({"loss": loss.detach(), "pair": {"a": float(step), "b": 1.0}, "note": f"step {step}"}, step=step)
    writer = accelerator.get_tracker("hf_summary", unwrap=True)
    # Free the DDP model (its reducer holds gloo work with Python callbacks) while the interpreter is fully
    # alive: freed at interpreter shutdown instead, it may abort the process ("terminate called without an
    # active exception", SIGABRT, seen once on rank 1 in CI), which is torch's teardown, not the tracker's.
    del model, optimizer, loss
    accelerator.free_memory()
    accelerator.end_training()
    print(f"done rank {accelerator.process_index} writer {type(writer).__module__}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
