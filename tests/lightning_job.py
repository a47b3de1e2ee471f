"""A tiny Lightning job on CPU for the plug-in tests: ``python lightning_job.py '<json config>'``.

It logs through ``HFSummaryLogger`` (metrics, a dict of metrics, hparams, the graph), checkpoints every
``ckpt_every`` steps and prints ``step N`` after each training step, so a test can preempt it at a known step.
With ``devices`` > 1 and ``strategy="ddp"``, Lightning starts the other ranks itself (its subprocess launcher).
"""

from __future__ import annotations

import json
import sys
import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from hf_summary.integrations.lightning import HFSummaryLogger


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.1, sleep: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)
        self.example_input_array = torch.zeros(1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        self.logger.log_metrics({"pair": {"a": float(self.global_step), "b": 1.0}}, step=self.global_step)
        print(f"step {self.global_step}", flush=True)
        time.sleep(self.hparams.sleep)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main(config: dict) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    logger = HFSummaryLogger(
        config["save_dir"], repo_id=config["repo_id"], version=config.get("version"), log_graph=True,
        commit_every=config.get("commit_every", 5),
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=config.get("devices", 1), strategy=config.get("strategy", "auto"),
        max_steps=config["max_steps"], logger=logger, log_every_n_steps=1,
        callbacks=[ModelCheckpoint(dirpath=config["ckpt_dir"], every_n_train_steps=config["ckpt_every"], save_last=True)],
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Tiny(sleep=config.get("sleep", 0.0)), DataLoader(data, batch_size=8), ckpt_path=config.get("ckpt_path"))
    writer = type(logger.experiment)
    print(f"done {logger.log_dir} rank {trainer.global_rank} writer {writer.__module__}.{writer.__name__}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
