"""How a logdir is pushed (`RunSettings`), and the one conversion to and from the journal's `settings` row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

_DEFAULT_REPO_TYPE = "model"
_DEFAULT_REVISION = "main"
_DEFAULT_COMMIT_EVERY_S = 300.0


@dataclass
class RunSettings:
    """How a logdir is pushed; `path_in_repo` already includes the logdir name."""

    repo_id: str
    repo_type: str
    revision: str
    path_in_repo: str
    allow_patterns: list[str] | None
    ignore_patterns: list[str] | None
    squash_history: bool
    commit_every_s: float
    private: bool | None
    endpoint: str | None

    @property
    def destination(self) -> tuple[str, str, str, str]:
        """Where the segments go: (repo_id, repo_type, revision, path_in_repo)."""
        return (self.repo_id, self.repo_type, self.revision, self.path_in_repo)

    def to_row(self) -> dict[str, Any]:
        """The columns of the `settings` row (patterns as JSON lists), without `id` and `updated_at`."""
        row = asdict(self)
        for key in ("allow_patterns", "ignore_patterns"):
            row[key] = None if row[key] is None else json.dumps(list(row[key]))
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunSettings:
        """The settings a `settings` row holds. Tolerates the columns a damaged or foreign journal may lack
        (`repo_id` and `path_in_repo` excepted) and checks every value's type; raises `KeyError`,
        `TypeError` or `ValueError` when the row cannot be read as settings."""

        def text(key: str, default: str | None = None) -> str | None:
            value = row.get(key)
            if value is None:
                return default
            if not isinstance(value, str):
                raise TypeError(f"settings.{key} is {type(value).__name__}, not text")
            return value

        def patterns(key: str) -> list[str] | None:
            value = text(key)
            return None if value is None else [str(pattern) for pattern in json.loads(value)]

        commit_every_s = row.get("commit_every_s")
        private = row.get("private")
        return cls(
            repo_id=_required(text("repo_id"), "repo_id"),
            repo_type=text("repo_type") or _DEFAULT_REPO_TYPE,
            revision=text("revision") or _DEFAULT_REVISION,
            path_in_repo=_required(text("path_in_repo"), "path_in_repo"),
            allow_patterns=patterns("allow_patterns"),
            ignore_patterns=patterns("ignore_patterns"),
            squash_history=bool(row.get("squash_history")),
            commit_every_s=_DEFAULT_COMMIT_EVERY_S if commit_every_s is None else float(commit_every_s),
            private=None if private is None else bool(private),
            endpoint=text("endpoint"),
        )


def _required(value: str | None, key: str) -> str:
    if value is None:
        raise KeyError(f"settings.{key} is missing")
    return value
