"""The CAS routes hf_xet calls, under `/_localhub/cas/<id>/` (https://huggingface.co/docs/xet/api).

- `GET v1/chunks/default/{chunk}`: the global-dedup query. Always 404 ("not known"): this CAS offers no
  global dedup, so the client dedups only against what it uploaded itself.
- `POST v1/xorbs/default/{xorb}`: a raw xorb; `{"was_inserted": bool}`.
- `POST v1/shards`: a raw shard; each file in it is rebuilt from the stored chunks and checked (casstore),
  then becomes an object of the token's repo that its commits (or bucket batches) may name.
- `GET v1/reconstructions/{file}` with `Range`: the terms covering the range and one signed fetch URL per
  xorb range. `GET fetch/{xorb}?expires=&signature=` serves those ranges (206) without Authorization, as
  presigned storage URLs are fetched.
`v2` routes, upload grants and telemetry are absent on purpose: their 404 makes hf_xet fall back to v1.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import FileResponse, JSONResponse

from hf_summary.localhub.casstore import CasError, XetFile
from hf_summary.localhub.errors import HubError, bad_request
from hf_summary.localhub.xet import cas_repo
from hf_summary.localhub.xetformat import HASH_RE, XetFormatError, shard_files

if TYPE_CHECKING:
    from hf_summary.localhub.call import Call

FETCH_LIFETIME_S = 3600
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")


def _check_instance(call: Call) -> None:
    if f"/_localhub/cas/{call.params['instance']}" != call.hub.cas_prefix:
        raise HubError(404, "Unknown CAS: get a fresh casUrl from the Hub's token route")


def _hash_param(call: Call, name: str) -> str:
    value = call.params[name]
    if not HASH_RE.fullmatch(value):
        raise bad_request(f"Invalid hash: {value!r}")
    return value


def chunk_dedup(call: Call) -> JSONResponse:
    _check_instance(call)
    cas_repo(call.hub, call.request, "read")
    _hash_param(call, "hash")
    return JSONResponse({"error": "chunk not known"}, status_code=404)


def upload_xorb(call: Call) -> JSONResponse:
    _check_instance(call)
    cas_repo(call.hub, call.request, "write")
    try:
        inserted = call.hub.cas.put_xorb(_hash_param(call, "hash"), call.body)
    except XetFormatError as e:
        raise bad_request(f"Malformed xorb: {e}") from None
    return JSONResponse({"was_inserted": inserted})


def upload_shard(call: Call) -> JSONResponse:
    _check_instance(call)
    repo = cas_repo(call.hub, call.request, "write")
    try:
        files = shard_files(call.body)
        stored = [call.hub.cas.add_file(f) for f in files]
    except (XetFormatError, CasError) as e:
        raise bad_request(f"Shard refused: {e}") from None
    for xet_file in stored:
        call.hub.storage.add_lfs_object(repo, xet_file.sha256, xet_file.size)
    return JSONResponse({"result": 1})


def readable_file(call: Call, file_hash: str) -> XetFile:
    """The Xet file if the token's repo holds its content; 404 otherwise (others' files stay invisible)."""
    repo = cas_repo(call.hub, call.request, "read")
    xet_file = call.hub.cas.file(file_hash)
    if xet_file is None or call.hub.storage.lfs_object_size(repo, xet_file.sha256) is None:
        raise HubError(404, f"File {file_hash} not found")
    return xet_file


def reconstruction(call: Call) -> JSONResponse:
    _check_instance(call)
    xet_file = readable_file(call, _hash_param(call, "hash"))
    first, last = _byte_range(call.request.headers.get("range"), xet_file.size)
    terms: list[dict[str, Any]] = []
    wanted: dict[str, list[tuple[int, int]]] = {}
    offset, offset_into_first = 0, 0
    for term in xet_file.terms:
        start, offset = offset, offset + term.size
        if offset <= first or start > last:
            continue
        if not terms:
            offset_into_first = first - start
        terms.append({"hash": term.xorb, "unpacked_length": term.size, "range": {"start": term.start, "end": term.end}})
        wanted.setdefault(term.xorb, []).append((term.start, term.end))
    fetch_info = {xorb: _fetch_ranges(call, xorb, ranges) for xorb, ranges in wanted.items()}
    return JSONResponse({"offset_into_first_range": offset_into_first, "terms": terms, "fetch_info": fetch_info})


def _fetch_ranges(call: Call, xorb: str, ranges: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """One fetch entry per run of overlapping chunk ranges: hf_xet reads each term from a single entry and
    does not look past the first that matches, so overlapping entries (a term repeated inside a longer
    one, as in a file of zeros) would make it slice past the fetched bytes."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    chunks = call.hub.cas.chunks(xorb) or []
    url = _fetch_url(call, xorb)
    return [
        {
            "range": {"start": start, "end": end},
            "url": url,
            "url_range": {"start": chunks[start].offset, "end": chunks[end - 1].end - 1},
        }
        for start, end in merged
    ]


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """(first, last) byte, inclusive; 416 when the range starts past the end."""
    if header is None:
        return 0, size - 1
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        raise bad_request(f"Unsupported Range header: {header!r}")
    first = int(match[1])
    last = min(int(match[2]) if match[2] else size - 1, size - 1)
    if first >= size or last < first:
        raise HubError(416, f"Range {header!r} is outside the file ({size} bytes)")
    return first, last


def _signature(secret: bytes, xorb: str, expires: int) -> str:
    return hmac.new(secret, f"fetch\0{xorb}\0{expires}".encode(), hashlib.sha256).hexdigest()


def _fetch_url(call: Call, xorb: str) -> str:
    expires = int(time.time()) + FETCH_LIFETIME_S
    signature = _signature(call.hub.secret, xorb, expires)
    return f"{call.cas_url}/fetch/{xorb}?expires={expires}&signature={signature}"


def fetch(call: Call) -> FileResponse:
    _check_instance(call)
    xorb = _hash_param(call, "hash")
    expires = call.query("expires", "")
    if not expires.isdigit() or int(expires) < time.time():
        raise HubError(403, "Expired or malformed fetch URL: ask for a new reconstruction")
    if not hmac.compare_digest(_signature(call.hub.secret, xorb, int(expires)), call.query("signature", "")):
        raise HubError(403, "Invalid fetch URL signature")
    path = call.hub.cas.xorb_path(xorb)
    if not path.exists():
        raise HubError(404, f"Xorb {xorb} not found")
    return FileResponse(path, media_type="application/octet-stream")
