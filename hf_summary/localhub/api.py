"""Handlers for the `/api/...` endpoints (https://huggingface.co/docs/hub/api, as `huggingface_hub.HfApi` calls them).

Each handler takes a `Call` (see app.py) and returns a Response; errors are raised as `HubError`.
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

from hf_summary.localhub.auth import INVALID_CREDENTIALS, check_namespace
from hf_summary.localhub.call import Call
from hf_summary.localhub.commitbody import COMMIT_OID_RE, parse_commit_body, validate_path
from hf_summary.localhub.errors import HubError, bad_request, entry_not_found
from hf_summary.localhub.gitobjects import DirEntry, Entry, FileEntry
from hf_summary.localhub.lfs import should_use_lfs
from hf_summary.localhub.storage import REPO_TYPES, Commit, Repo, ref_name

SPACE_SDKS = ("gradio", "streamlit", "docker", "static")


def iso_date(timestamp: float) -> str:
    """ISO-8601 UTC with a `Z` suffix: the client rejects `+00:00`."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- users and repos ----------------------------------------------------------------------------------


def whoami(call: Call) -> JSONResponse:
    user = call.caller.user
    if user is None:
        raise HubError(401, INVALID_CREDENTIALS)
    return JSONResponse(
        {
            "type": "user",
            "id": user,
            "name": user,
            "fullname": user,
            "email": f"{user}@localhub.invalid",
            "emailVerified": True,
            "isPro": False,
            "orgs": [],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": f"{user} (local Hub)", "role": "write"},
            },
        }
    )


def _repo_target(call: Call) -> tuple[str, str, str]:
    """(type, namespace, name) from a create/delete body; the namespace defaults to the caller."""
    body = call.json_object()
    repo_type = body.get("type") or "model"
    name, namespace = body.get("name"), body.get("organization") or call.caller.require_user()
    if repo_type not in REPO_TYPES:
        raise bad_request(f"Invalid repo type: {repo_type!r}")
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise bad_request("'name' and 'organization' must be strings")
    call.params.update(type=repo_type, namespace=namespace, name=name)
    return repo_type, namespace, name


def create_repo(call: Call) -> JSONResponse:
    repo_type, namespace, name = _repo_target(call)
    body = call.json_object()
    check_namespace(call.caller, namespace)
    if body.get("visibility") not in (None, "private", "public"):
        raise bad_request(f"Invalid visibility: {body['visibility']!r}")
    private = body.get("visibility") == "private" or body.get("private") is True
    sdk = body.get("sdk")
    if repo_type == "space" and sdk not in SPACE_SDKS:
        raise bad_request(f"Spaces need an sdk, one of {', '.join(SPACE_SDKS)}")
    repo, created = call.hub.storage.create_repo(repo_type, namespace, name, private=private, sdk=sdk)
    url = call.repo_url(repo)
    if not created:  # the client's exist_ok=True reads `url` from this 409
        return JSONResponse(
            {"error": f"You already created this {repo_type} repo", "url": url}, status_code=409
        )
    return JSONResponse({"url": url, "name": repo.repo_id, "id": repo.repo_id})


def delete_repo(call: Call) -> JSONResponse:
    _repo_target(call)
    call.hub.storage.delete_repo(call.writable_repo())
    return JSONResponse({})


def validate_yaml(call: Call) -> JSONResponse:
    """Accept every card: the local Hub does not validate metadata (the client needs a JSON 200)."""
    if not isinstance(call.json_object().get("content"), str):
        raise bad_request("'content' must be a string")
    return JSONResponse({"errors": [], "warnings": []})


def repo_info(call: Call) -> JSONResponse:
    repo = call.readable_repo()
    commit = call.hub.storage.resolve(repo, call.params["revision"])
    files = call.hub.storage.files(commit.tree).values()
    blobs = call.flag("blobs")
    info: dict[str, Any] = {
        "_id": f"{repo.pk:024x}",
        "id": repo.repo_id,
        "author": repo.namespace,
        "sha": commit.oid,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "lastModified": iso_date(commit.created_at),
        "createdAt": iso_date(repo.created_at),
        "tags": [],
        "downloads": 0,
        "likes": 0,
        "siblings": [_sibling(f) if blobs else {"rfilename": f.path} for f in files],
    }
    if blobs:
        info["usedStorage"] = sum(f.size for f in files)
    if repo.type == "model":
        info["modelId"] = repo.repo_id
    if repo.type == "space":
        info["sdk"] = repo.sdk
    return JSONResponse(info)


def _sibling(f: FileEntry) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": f.oid}
    if f.lfs:
        sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
    return sibling


# -- uploads ------------------------------------------------------------------------------------------


def preupload(call: Call) -> JSONResponse:
    """Upload modes as the Hub answers them: "lfs" for binary and large files (see lfs.should_use_lfs) and
    for files that are LFS already; "regular" for the rest, and for everything in regular-only mode.

    `oid` is the current file's id at the revision, so the client skips unchanged files.
    """
    repo = call.writable_repo()
    commit = call.hub.storage.resolve(repo, call.params["revision"])
    requested = call.json_object().get("files")
    if not isinstance(requested, list):
        raise bad_request("'files' must be a list")
    answers = []
    for item in requested:
        if not isinstance(item, dict):
            raise bad_request("Each entry of 'files' must be an object")
        path = validate_path(item.get("path"))
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad_request(f"{path!r}: 'size' must be a non-negative integer")
        try:
            sample = base64.b64decode(item.get("sample", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise bad_request(f"{path!r}: 'sample' is not valid base64") from None
        existing = call.hub.storage.lookup(commit.tree, path)
        current = existing if isinstance(existing, FileEntry) else None
        lfs = not call.hub.regular and (should_use_lfs(sample, size) or (current is not None and current.lfs))
        answers.append(
            {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": False,
                "oid": current.etag if current else None,
            }
        )
    return JSONResponse({"files": answers})


def commit(call: Call) -> JSONResponse:
    repo = call.writable_repo()
    request = parse_commit_body(call.body)
    new, pr_num = call.hub.storage.commit(
        repo,
        call.params["revision"],
        request,
        author=call.caller.require_user(),
        create_pr=call.flag("create_pr"),
    )
    url = call.repo_url(repo)
    answer = {"success": True, "commitOid": new.oid, "commitUrl": f"{url}/commit/{new.oid}", "hookOutput": ""}
    if pr_num is not None:
        answer["pullRequestUrl"] = f"{url}/discussions/{pr_num}"
    return JSONResponse(answer)


# -- listings -----------------------------------------------------------------------------------------


def _paged_start(call: Call, repo: Repo) -> tuple[Commit, int]:
    """(commit, offset) for a listing: the revision's head, or the pinned commit of a `cursor`."""
    cursor = call.query("cursor")
    if cursor is None:
        return call.hub.storage.resolve(repo, call.params["revision"]), 0
    oid, _, offset = cursor.partition(":")
    if not COMMIT_OID_RE.fullmatch(oid) or not offset.isdigit():
        raise bad_request(f"Invalid cursor: {cursor!r}")
    return call.hub.storage.resolve(repo, oid), int(offset)


def list_tree(call: Call) -> JSONResponse:
    repo = call.readable_repo()
    commit, offset = _paged_start(call, repo)
    path = call.params["path"].strip("/")
    recursive, expand = call.flag("recursive"), call.flag("expand")
    entries = call.hub.storage.list_folder(commit.tree, path, recursive=recursive)
    if entries is None:
        raise entry_not_found(path, commit.oid)
    end = offset + call.hub.page_size
    page = [_tree_entry(call, repo, commit, e, expand) for e in entries[offset:end]]
    headers = {}
    if end < len(entries):
        headers = call.next_link(
            recursive=str(recursive).lower(), expand=str(expand).lower(), cursor=f"{commit.oid}:{end}"
        )
    return JSONResponse(page, headers=headers)


def paths_info(call: Call) -> JSONResponse:
    repo = call.readable_repo()
    commit = call.hub.storage.resolve(repo, call.params["revision"])
    if call.request.headers.get("content-type", "").startswith("application/json"):
        form = call.json_object()
        paths, expand = form.get("paths", []), bool(form.get("expand"))
    else:
        form = parse_qs(call.body.decode("utf-8", "replace"), keep_blank_values=True)
        paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() == "true"
    if not isinstance(paths, list):
        raise bad_request("'paths' must be a list")
    found = []
    for path in paths:
        entry = call.hub.storage.lookup(commit.tree, validate_path(path, folder=True))
        if entry is not None:
            found.append(_tree_entry(call, repo, commit, entry, expand))
    return JSONResponse(found)


def _tree_entry(call: Call, repo: Repo, commit: Commit, entry: Entry, expand: bool) -> dict[str, Any]:
    if isinstance(entry, DirEntry):
        out: dict[str, Any] = {"type": "directory", "oid": entry.oid, "size": 0, "path": entry.path}
    else:
        out = {"type": "file", "oid": entry.oid, "size": entry.size, "path": entry.path}
        if entry.lfs:
            out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            if xet_file := call.hub.cas.file_for_sha256(entry.sha256):
                out["xetHash"] = xet_file.hash
    if expand:
        last = _last_commit(call, repo, commit, entry)
        out["lastCommit"] = {"id": last.oid, "title": last.title, "date": iso_date(last.created_at)}
    return out


def _last_commit(call: Call, repo: Repo, commit: Commit, entry: Entry) -> Commit:
    """The newest commit (from `commit` back) in which the entry got its current id."""
    storage = call.hub.storage
    last = commit
    for older in storage.history(repo, commit.parent):
        previous = storage.lookup(older.tree, entry.path)
        if previous is None or previous.oid != entry.oid:
            break
        last = older
    return last


def list_commits(call: Call) -> JSONResponse:
    """Newest first. The `Link` cursor names the first commit of the next page, so each page costs
    only its own length however long the history is."""
    repo = call.readable_repo()
    start, offset = _paged_start(call, repo)
    query = call.request.query_params
    formatted = "formatted" in query.getlist("expand[]") + query.getlist("expand")
    history = itertools.islice(call.hub.storage.history(repo, start.oid), offset, None)
    page = list(itertools.islice(history, call.hub.page_size + 1))
    following = page.pop() if len(page) > call.hub.page_size else None
    items = []
    for c in page:
        item: dict[str, Any] = {
            "id": c.oid,
            "title": c.title,
            "message": c.message,
            "date": iso_date(c.created_at),
            "authors": [{"user": c.author}],
        }
        if formatted:
            item["formatted"] = {"title": html.escape(c.title), "message": html.escape(c.message)}
        items.append(item)
    headers = {}
    if following is not None:
        headers = call.next_link(
            cursor=f"{following.oid}:0", **({"expand[]": "formatted"} if formatted else {})
        )
    return JSONResponse(items, headers=headers)


def list_refs(call: Call) -> JSONResponse:
    repo = call.readable_repo()
    refs = call.hub.storage.refs(repo)
    answer: dict[str, Any] = {
        "branches": [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid}
            for n, oid in refs.items()
            if not n.startswith("refs/")
        ],
        "tags": [],
        "converts": [],
    }
    if call.flag("include_prs"):
        answer["pullRequests"] = [
            {"name": n, "ref": n, "targetCommit": oid} for n, oid in refs.items() if n.startswith("refs/pr/")
        ]
    return JSONResponse(answer)


# -- branches and history -----------------------------------------------------------------------------


def super_squash(call: Call) -> JSONResponse:
    repo = call.writable_repo()
    branch = ref_name(call.params["revision"])
    message = call.json_object().get("message") or f"Super-squash branch '{branch}' using huggingface_hub"
    if not isinstance(message, str):
        raise bad_request("'message' must be a string")
    new = call.hub.storage.squash(repo, branch, message, author=call.caller.require_user())
    return JSONResponse({"commitId": new.oid})


def create_branch(call: Call) -> JSONResponse:
    repo = call.writable_repo()
    start = call.json_object().get("startingPoint") or "main"
    if not isinstance(start, str):
        raise bad_request("'startingPoint' must be a string")
    call.hub.storage.create_branch(repo, ref_name(call.params["revision"]), start)
    return JSONResponse({})


def delete_branch(call: Call) -> JSONResponse:
    repo = call.writable_repo()
    call.hub.storage.delete_branch(repo, call.params["revision"])
    return JSONResponse({})
