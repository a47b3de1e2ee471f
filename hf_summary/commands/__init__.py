"""The `hf-summary` commands, one module each: `hub`, `demo`, `view`, `status`, `recover`,
`watch`, `sync`, `settle`. Each has `register` (its parser) and `run` (its handler, which returns an
`ExitStatus`); `hf_summary.cli` builds the parser from them."""

from __future__ import annotations

from hf_summary.commands import demo, hub, recover, settle, status, sync, view, watch

COMMANDS = (hub, demo, view, status, recover, watch, sync, settle)
