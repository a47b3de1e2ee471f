"""Storage Buckets (https://huggingface.co/docs/hub/storage-buckets): `/api/buckets/...` and
`HEAD|GET /buckets/{ns}/{name}/resolve/{path}`.

Buckets share the users, privacy rules and fault injection of repos; they have no commits and no history.
Files arrive through the CAS (their shard makes the content an object of the bucket, see cas.py) and become
bucket files with a `/batch` `addFile` line naming their Xet hash; the size and SHA-256 come from the CAS.
Each batch line is applied on its own (batches are not atomic); failures are listed in `{"failed": [...]}`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import FileResponse, JSONResponse

from hf_summary.localhub.api import iso_date
from hf_summary.localhub.auth import check_namespace, check_read
from hf_summary.localhub.bucketstore import BucketFile, BucketFolder
from hf_summary.localhub.call import Call
from hf_summary.localhub.commitbody import validate_path
from hf_summary.localhub.errors import HubError, bad_request, entry_not_found
from hf_summary.localhub.storage import BUCKET, Repo
from hf_summary.localhub.xet import file_headers
from hf_summary.localhub.xetformat import HASH_RE


def _namespace(call: Call) -> str:
    """The URL's namespace, with "me" meaning the caller."""
    namespace = call.params["namespace"]
    if namespace == "me":
        namespace = call.caller.require_user()
        call.params["namespace"] = namespace
    return namespace


def _info(call: Call, repo: Repo) -> dict[str, Any]:
    count, size = call.hub.buckets.totals(repo)
    return {
        "id": repo.repo_id,
        "private": repo.private,
        "createdAt": iso_date(repo.created_at),
        "size": size,
        "totalFiles": count,
    }


def create(call: Call) -> JSONResponse:
    namespace = _namespace(call)
    check_namespace(call.caller, namespace)
    visibility = call.json_object().get("visibility")
    if visibility not in (None, "private", "public"):
        raise bad_request(f"Invalid visibility: {visibility!r}")
    repo, created = call.hub.storage.create_repo(
        BUCKET, namespace, call.params["name"], private=visibility == "private", sdk=None
    )
    url = call.repo_url(repo)
    if not created:
        return JSONResponse({"error": "You already created this bucket", "url": url}, status_code=409)
    return JSONResponse({"url": url, "id": repo.repo_id, "name": repo.repo_id})


def info(call: Call) -> JSONResponse:
    _namespace(call)
    return JSONResponse(_info(call, call.readable_repo()))


def delete(call: Call) -> JSONResponse:
    _namespace(call)
    call.hub.buckets.delete_bucket(call.writable_repo())
    return JSONResponse({})


def list_buckets(call: Call) -> JSONResponse:
    namespace = _namespace(call)
    visible = []
    for repo in call.hub.storage.list_repos(BUCKET):
        if repo.namespace == namespace and not (repo.private and call.caller.user != namespace):
            visible.append(_info(call, repo))
    return JSONResponse(visible)


def settings(call: Call) -> JSONResponse:
    _namespace(call)
    repo = call.writable_repo()
    private = call.json_object().get("private")
    if not isinstance(private, bool):
        raise bad_request("'private' must be a boolean")
    call.hub.storage.set_private(repo, private)
    return JSONResponse({})


def _entry(entry: BucketFile | BucketFolder) -> dict[str, Any]:
    if isinstance(entry, BucketFolder):
        return {"type": "directory", "path": entry.path, "uploadedAt": iso_date(entry.uploaded_at)}
    return {
        "type": "file",
        "path": entry.path,
        "size": entry.size,
        "xetHash": entry.xet_hash,
        "mtime": iso_date(entry.mtime_ms / 1000),
        "uploadedAt": iso_date(entry.uploaded_at),
    }


def tree(call: Call) -> JSONResponse:
    """One page of the listing; `cursor` is the offset of the next page."""
    _namespace(call)
    repo = call.readable_repo()
    prefix = call.params["path"].strip("/")
    if prefix:
        validate_path(prefix)
    cursor = call.query("cursor", "0")
    if not cursor.isdigit():
        raise bad_request(f"Invalid cursor: {cursor!r}")
    recursive = call.flag("recursive")
    entries = call.hub.buckets.listing(repo, prefix, recursive=recursive)
    start, end = int(cursor), int(cursor) + call.hub.page_size
    headers = call.next_link(recursive=str(recursive).lower(), cursor=str(end)) if end < len(entries) else {}
    return JSONResponse([_entry(e) for e in entries[start:end]], headers=headers)


def paths_info(call: Call) -> JSONResponse:
    _namespace(call)
    repo = call.readable_repo()
    paths = call.json_object().get("paths")
    if not isinstance(paths, list):
        raise bad_request("'paths' must be a list")
    found = [call.hub.buckets.get(repo, validate_path(p)) for p in paths]
    return JSONResponse([_entry(f) for f in found if f is not None])


def batch(call: Call) -> JSONResponse:
    _namespace(call)
    repo = call.writable_repo()
    lines = [line for line in call.body.split(b"\n") if line.strip()]
    failed = []
    for number, line in enumerate(lines, 1):
        try:
            _apply(call, repo, line)
        except HubError as e:
            failed.append({"path": _path_of(line) or f"line {number}", "error": e.message})
    status = 422 if lines and len(failed) == len(lines) else 200
    return JSONResponse({"failed": failed}, status_code=status)


def _path_of(line: bytes) -> str | None:
    try:
        path = json.loads(line).get("path")
    except (ValueError, AttributeError):
        return None
    return path if isinstance(path, str) else None


def _apply(call: Call, repo: Repo, line: bytes) -> None:
    try:
        op = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"not valid JSON: {e}") from None
    if not isinstance(op, dict):
        raise bad_request("each line must be a JSON object")
    path = validate_path(op.get("path"))
    match op.get("type"):
        case "addFile":
            xet_hash, mtime, content_type = op.get("xetHash"), op.get("mtime", 0), op.get("contentType")
            if not (isinstance(xet_hash, str) and HASH_RE.fullmatch(xet_hash)):
                raise bad_request("xetHash must be a 64-character hex hash")
            if isinstance(mtime, bool) or not isinstance(mtime, int) or mtime < 0:
                raise bad_request("mtime must be milliseconds since the epoch")
            if content_type is not None and not isinstance(content_type, str):
                raise bad_request("contentType must be a string")
            xet_file = call.hub.cas.file(xet_hash)
            if xet_file is None or call.hub.storage.lfs_object_size(repo, xet_file.sha256) is None:
                raise bad_request(f"Xet file {xet_hash} has not been uploaded to this bucket")
            call.hub.buckets.put(
                repo,
                BucketFile(path, xet_file.size, xet_file.sha256, xet_hash, mtime, content_type, time.time()),
            )
        case "deleteFile":
            call.hub.buckets.delete(repo, path)
        case other:
            raise bad_request(f"unsupported operation type {other!r} (the local Hub knows addFile and deleteFile)")


def resolve(call: Call) -> FileResponse:
    repo = check_read(call.caller, call.hub.storage.get_repo(BUCKET, call.params["namespace"], call.params["name"]))
    path = call.params["path"]
    file = call.hub.buckets.get(repo, path)
    xet_file = call.hub.cas.file(file.xet_hash) if file else None
    if file is None or xet_file is None:
        raise entry_not_found(path)
    headers = {
        "ETag": f'"{file.xet_hash}"',
        "X-Linked-Etag": f'"{file.xet_hash}"',
        "X-Linked-Size": str(file.size),
        **file_headers(call, repo, None, xet_file),
    }
    media_type = file.content_type or "application/octet-stream"
    return FileResponse(call.hub.storage.blobs.path(file.sha256), headers=headers, media_type=media_type)

