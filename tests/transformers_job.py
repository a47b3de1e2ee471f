"""A tiny transformers Trainer job on CPU for the plug-in tests: ``python transformers_job.py '<json config>'``.

A one-layer GPT-2 built from a config (nothing downloaded) logs every step through ``HFSummaryCallback``, for
``train_calls`` calls of ``train()``; it prints ``step N`` after each step so a test can preempt it. ``jit``
turns on transformers' own SIGTERM handling (a checkpoint, then a clean stop).
"""

from __future__ import annotations

import json
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from hf_summary.integrations.transformers import HFSummaryCallback


class Tokens(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = torch.tensor([(index + n) % 16 for n in range(8)])
        return {"input_ids": ids, "labels": ids}


class Progress(TrainerCallback):
    def __init__(self, sleep: float):
        self.sleep = sleep

    def on_step_end(self, args, state, control, **kwargs):
        print(f"step {state.global_step}", flush=True)
        time.sleep(self.sleep)


def main(config: dict) -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=1))
    args = TrainingArguments(
        config["output_dir"], max_steps=config["max_steps"], logging_steps=1, per_device_train_batch_size=4,
        save_strategy="steps" if config.get("save_steps") else "no", save_steps=config.get("save_steps") or 500,
        report_to="none", use_cpu=True, disable_tqdm=True, enable_jit_checkpoint=config.get("jit", False),
    )
    callback = HFSummaryCallback(config["repo_id"], commit_every=config.get("commit_every", 5))
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[callback, Progress(config.get("sleep", 0))])
    for _ in range(config.get("train_calls", 1)):
        trainer.train(resume_from_checkpoint=config.get("resume"))
    print(f"done {callback.logging_dir}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
