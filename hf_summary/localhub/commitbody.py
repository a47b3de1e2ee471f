"""Parsing and validation of `/commit` request bodies (the NDJSON `HfApi.create_commit` sends) and repo paths.

Everything is checked here, before anything is stored: a malformed body raises `HubError(400)`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from hf_summary.localhub.errors import bad_request

SHA256_RE = re.compile(r"[0-9a-f]{64}")
COMMIT_OID_RE = re.compile(r"[0-9a-f]{40}")
MAX_PATH_LENGTH = 4096


def validate_path(path: object, *, folder: bool = False) -> str:
    """A repo-relative file path (or folder path, which may end in one `/`) or HubError(400).

    Refused: non-strings, empty, absolute, backslashes, NUL and control characters, empty, `.` or `..`
    segments, and anything under `.git/`.
    """
    if not isinstance(path, str):
        raise bad_request(f"Invalid path: {path!r} is not a string")
    checked = path[:-1] if folder and path.endswith("/") else path
    if not checked or len(checked) > MAX_PATH_LENGTH:
        raise bad_request(f"Invalid path: {path!r} is empty or too long")
    if "\\" in checked or any(ord(c) < 32 or c == "\x7f" for c in checked):
        raise bad_request(f"Invalid path: {path!r} contains a backslash or control character")
    segments = checked.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise bad_request(f"Invalid path: {path!r} is absolute or has an empty, '.' or '..' segment")
    if segments[0] == ".git":
        raise bad_request(f"Invalid path: {path!r} is inside .git")
    return checked


@dataclass(frozen=True)
class AddFile:
    path: str
    content: bytes


@dataclass(frozen=True)
class AddLfsFile:
    path: str
    sha256: str
    size: int | None  # None for server-side copies: the size comes from the stored object


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | AddLfsFile | DeleteFile | DeleteFolder


@dataclass
class CommitRequest:
    summary: str
    description: str
    parent_commit: str | None
    operations: list[Operation] = field(default_factory=list)


def parse_commit_body(body: bytes) -> CommitRequest:
    lines = [line for line in body.split(b"\n") if line.strip()]
    if not lines:
        raise bad_request("Empty commit payload")
    items = [_parse_line(n, line) for n, line in enumerate(lines, 1)]
    key, header = items[0]
    if key != "header":
        raise bad_request("The first line of a commit payload must be the header")
    summary = header.get("summary")
    description = header.get("description", "") or ""
    parent = header.get("parentCommit")
    if not isinstance(summary, str) or not summary.strip():
        raise bad_request("Commit summary is required")
    if not isinstance(description, str):
        raise bad_request("Commit description must be a string")
    if parent is not None and not (isinstance(parent, str) and COMMIT_OID_RE.fullmatch(parent)):
        raise bad_request(f"Invalid parentCommit: {parent!r}")
    request = CommitRequest(summary, description, parent)
    for key, value in items[1:]:
        request.operations.append(_parse_operation(key, value))
    return request


def _parse_line(number: int, line: bytes) -> tuple[str, dict]:
    try:
        item = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"Line {number} of the commit payload is not valid JSON: {e}") from None
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("key"), str)
        or not isinstance(item.get("value"), dict)
    ):
        raise bad_request(f'Line {number} of the commit payload must be {{"key": str, "value": object}}')
    return item["key"], item["value"]


def _parse_operation(key: str, value: dict) -> Operation:
    if key == "file":
        path = validate_path(value.get("path"))
        if value.get("encoding") != "base64" or not isinstance(value.get("content"), str):
            raise bad_request(f"File {path!r}: content must be a base64 string with encoding 'base64'")
        try:
            content = base64.b64decode(value["content"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"File {path!r}: content is not valid base64") from None
        return AddFile(path, content)
    if key == "lfsFile":
        path = validate_path(value.get("path"))
        oid, size, algo = value.get("oid"), value.get("size"), value.get("algo", "sha256")
        if algo != "sha256" or not (isinstance(oid, str) and SHA256_RE.fullmatch(oid)):
            raise bad_request(f"LFS file {path!r}: oid must be a lower-case sha256 hex digest")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise bad_request(f"LFS file {path!r}: size must be a non-negative integer")
        return AddLfsFile(path, oid, size)
    if key == "deletedFile":
        return DeleteFile(validate_path(value.get("path")))
    if key == "deletedFolder":
        return DeleteFolder(validate_path(value.get("path"), folder=True))
    raise bad_request(f"Unknown commit operation key: {key!r}")
