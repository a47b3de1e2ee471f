"""`HEAD`/`GET /[datasets/|spaces/]{ns}/{name}/resolve/{rev}/{path}`: what `hf_hub_download` and `file_exists` call
(https://huggingface.co/docs/huggingface_hub/package_reference/file_download).

Served directly (no redirect) with the headers the client's metadata step needs on the final
response: `X-Repo-Commit`, a quoted `ETag` (git blob SHA-1 for regular files, SHA-256 for LFS files,
which also get `X-Linked-Etag`/`X-Linked-Size`) and the real `Content-Length`, also on HEAD. LFS files
whose content the CAS holds also carry `X-Xet-Hash` and the read-token route (xet.file_headers), so a
client with hf_xet downloads them through Xet; the GET serves the same bytes to everyone else.
Starlette's FileResponse answers `Range` requests with 206.
"""

from __future__ import annotations

from starlette.responses import FileResponse

from hf_summary.localhub.call import Call
from hf_summary.localhub.errors import entry_not_found
from hf_summary.localhub.gitobjects import FileEntry
from hf_summary.localhub.xet import file_headers


def resolve(call: Call) -> FileResponse:
    repo = call.readable_repo()
    commit = call.hub.storage.resolve(repo, call.params["revision"])
    path = call.params["path"]
    entry = call.hub.storage.lookup(commit.tree, path)
    if not isinstance(entry, FileEntry):
        raise entry_not_found(path, commit.oid)
    headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.etag}"'}
    if entry.lfs:
        headers |= {"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)}
        if xet_file := call.hub.cas.file_for_sha256(entry.sha256):
            headers |= file_headers(call, repo, commit.oid, xet_file)
    return FileResponse(
        call.hub.storage.blobs.path(entry.sha256), headers=headers, media_type="application/octet-stream"
    )
