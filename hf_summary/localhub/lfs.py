"""Basic Git LFS (https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md): which files are LFS, the batch
endpoint, signed PUT, verify.

The client PUTs LFS content without an Authorization header, so upload URLs authorise themselves:
`/_localhub/lfs/upload/{type}/{ns}/{name}/{oid}?size=&expires=&signature=` where the signature is
an HMAC over those fields with the server's secret. Batch answers never carry `chunk_size`, so the
client always uses a single PUT (never multipart). A stored object is recorded per repo, and only
objects recorded for a repo may be referenced by that repo's `lfsFile` commit lines.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from hf_summary.localhub.call import Call
from hf_summary.localhub.commitbody import SHA256_RE
from hf_summary.localhub.errors import HubError, bad_request, repo_not_found

LARGE_FILE_BYTES = 10 * 1024 * 1024
SAMPLE_BYTES = 512
URL_LIFETIME_S = 3600
LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"


def should_use_lfs(sample: bytes, size: int) -> bool:
    """LFS for large files (>= 10 MB) and binary ones (a NUL byte, or not UTF-8, in the sample)."""
    if size >= LARGE_FILE_BYTES or b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        # the 512-byte sample may cut a multi-byte character in two: that alone is not binary
        truncated = len(sample) == SAMPLE_BYTES < size and e.reason == "unexpected end of data"
        return not truncated
    return False


def _signature(secret: bytes, repo_key: str, oid: str, size: int, expires: int) -> str:
    return hmac.new(secret, f"{repo_key}\n{oid}\n{size}\n{expires}".encode(), hashlib.sha256).hexdigest()


def batch(call: Call) -> JSONResponse:
    repo = call.writable_repo()
    payload = call.json_object()
    if payload.get("operation") != "upload":
        raise bad_request("The local Hub's LFS endpoint only supports the 'upload' operation")
    objects = payload.get("objects")
    if not isinstance(objects, list):
        raise bad_request("'objects' must be a list")
    answers: list[dict[str, Any]] = []
    expires = int(time.time()) + URL_LIFETIME_S
    for obj in objects:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not (isinstance(oid, str) and SHA256_RE.fullmatch(oid)) or not isinstance(size, int) or size < 0:
            answers.append(
                {
                    "oid": str(oid),
                    "size": size if isinstance(size, int) else 0,
                    "error": {
                        "code": 422,
                        "message": "oid must be a sha256 hex digest and size an integer >= 0",
                    },
                }
            )
            continue
        if call.hub.storage.lfs_object_size(repo, oid) == size and call.hub.storage.blobs.exists(oid, size):
            answers.append({"oid": oid, "size": size})
            continue
        signature = _signature(call.hub.secret, repo.key, oid, size, expires)
        upload = f"{call.base_url}/_localhub/lfs/upload/{repo.key}/{oid}?size={size}&expires={expires}&signature={signature}"
        answers.append(
            {
                "oid": oid,
                "size": size,
                "authenticated": True,
                "actions": {
                    "upload": {"href": upload, "expires_in": URL_LIFETIME_S},
                    "verify": {
                        "href": f"{call.base_url}/_localhub/lfs/verify/{repo.key}",
                        "expires_in": URL_LIFETIME_S,
                    },
                },
            }
        )
    return JSONResponse({"transfer": "basic", "objects": answers}, media_type=LFS_MEDIA_TYPE)


async def upload(call: Call) -> Response:
    """The signed PUT: stream the body to a temporary file, check size and SHA-256, then store it."""
    oid = call.params["oid"]
    size, expires, signature = (call.query(k, "") for k in ("size", "expires", "signature"))
    if not (SHA256_RE.fullmatch(oid) and size.isdigit() and expires.isdigit()):
        raise bad_request("Malformed LFS upload URL")
    repo_key = f"{call.params['type']}/{call.params['namespace']}/{call.params['name']}"
    expected = _signature(call.hub.secret, repo_key, oid, int(size), int(expires))
    if not hmac.compare_digest(expected, signature) or int(expires) < time.time():
        raise HubError(403, "Invalid or expired LFS upload signature")
    repo = await run_in_threadpool(
        call.hub.storage.get_repo, call.params["type"], call.params["namespace"], call.params["name"]
    )
    if repo is None:
        raise repo_not_found(authenticated=False)
    declared = call.request.headers.get("content-length")
    if declared is not None and declared != size:
        raise bad_request(f"Content-Length {declared} does not match the object size {size}")
    blobs = call.hub.storage.blobs
    fd, tmp = blobs.new_temp()
    digest, received = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in call.request.stream():
                received += len(chunk)
                if received > int(size):
                    raise bad_request(f"Upload is larger than the object size {size}")
                digest.update(chunk)
                f.write(chunk)
        if received != int(size) or digest.hexdigest() != oid:
            raise bad_request(f"Uploaded content does not match oid {oid} and size {size}")
        blobs.adopt(tmp, oid)
    finally:
        tmp.unlink(missing_ok=True)
    await run_in_threadpool(call.hub.storage.add_lfs_object, repo, oid, int(size))
    return Response(status_code=200)


def verify(call: Call) -> JSONResponse:
    repo = call.writable_repo()
    payload = call.json_object()
    oid, size = payload.get("oid"), payload.get("size")
    if not (isinstance(oid, str) and SHA256_RE.fullmatch(oid)) or not isinstance(size, int):
        raise bad_request("verify needs a sha256 'oid' and an integer 'size'")
    storage = call.hub.storage
    if storage.lfs_object_size(repo, oid) != size or not storage.blobs.exists(oid, size):
        raise HubError(404, f"LFS object {oid} with size {size} is not stored")
    return JSONResponse({"oid": oid, "size": size})
