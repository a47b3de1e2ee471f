"""Upload patterns match paths exactly as huggingface_hub's own filtering does (the writer keeps what an
``upload_folder`` with the same patterns would upload), without importing the client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub.utils import filter_repo_objects

from hf_summary.patterns import path_matches

REPO_ROOT = Path(__file__).resolve().parent.parent

PATHS = [
    "events.out.tfevents.1.host", "train/events.out.tfevents.1.host", "hparams.yaml", "train/hparams.yaml",
    "projector/00001/tensors.tsv", "secret/key.pem", "Secret/key.pem", ".hidden", "a\\b.yaml", "ckpt/model.bin",
]
PATTERNS = [
    None, [], ["*.tfevents.*"], ["*.yaml"], ["train/*"], ["secret/"], ["projector/"], [".*"], ["a/*"],
    ["*.tfevents.*", "*.yaml"], ["*.YAML"], ["ckpt\\*"], ["[st]*"],
]


@pytest.mark.parametrize("allow", PATTERNS)
@pytest.mark.parametrize("ignore", PATTERNS)
def test_the_same_verdict_as_the_hub_client(allow, ignore):
    expected = set(filter_repo_objects(PATHS, allow_patterns=allow, ignore_patterns=ignore))
    assert {path for path in PATHS if path_matches(path, allow, ignore)} == expected


def test_matching_does_not_import_the_hub_client():
    program = ("import sys\nfrom hf_summary.patterns import path_matches\n"
               "assert path_matches('a.yaml', ['*.yaml'], None)\nprint('huggingface_hub' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
