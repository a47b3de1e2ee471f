"""Upload glob patterns (`allow_patterns`, `ignore_patterns`, the watcher's assets): what a user may give, and
which paths they let through, by the rules of huggingface_hub's own filtering (`filter_repo_objects`), so that
a writer keeps exactly the files an `upload_folder` with the same patterns would upload. Standard library
only: the journal's readers (`status`, `recover`'s reconciliation) match paths without loading the client."""

from __future__ import annotations

from fnmatch import fnmatchcase


def check_patterns(name: str, patterns: list[str] | str | None) -> list[str] | None:
    """Glob patterns as a list (a single string is one pattern); `name` is the argument, for the error."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        return [patterns]
    if isinstance(patterns, (list, tuple)) and all(isinstance(p, str) for p in patterns):
        return list(patterns)
    raise TypeError(f"{name} must be a glob string or a list of them, got {patterns!r}")


def path_matches(path: str, allow_patterns: list[str] | None, ignore_patterns: list[str] | None) -> bool:
    """Whether `path` passes the allow/ignore glob patterns: case-sensitive `fnmatch` (`*` crosses
    `/`), backslashes read as `/`, and a pattern ending in `/` meaning everything below that folder."""
    path = _normalized(path)
    if allow_patterns is not None and not any(fnmatchcase(path, _pattern(p)) for p in allow_patterns):
        return False
    return ignore_patterns is None or not any(fnmatchcase(path, _pattern(p)) for p in ignore_patterns)


def _normalized(path: str) -> str:
    return path.replace("\\", "/")


def _pattern(pattern: str) -> str:
    pattern = _normalized(pattern)
    return pattern + "*" if pattern.endswith("/") else pattern
