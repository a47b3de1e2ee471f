"""`GET /[datasets/|spaces/]{ns}/{name}`: the repo's web page, a small HTML view for a browser.

It lists the files at the head of `main` and, when some are TensorBoard event files (names containing
`tfevents`, TensorBoard's own rule), the `hf-summary view` command that shows them. A repo the caller may
not see answers as the API does (401/404 `RepoNotFound`), as an HTML page.
"""

from __future__ import annotations

import posixpath
from datetime import datetime, timezone
from html import escape

from starlette.responses import HTMLResponse

from hf_summary.localhub.call import Call
from hf_summary.localhub.errors import HubError
from hf_summary.localhub.gitobjects import FileEntry

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}"
    "table{border-collapse:collapse}td,th{padding:.2em 1em .2em 0;text-align:left}"
    "td.size{text-align:right}code,pre{background:#f4f4f4;padding:.1em .3em}pre{padding:.6em}"
)


def repo_page(call: Call) -> HTMLResponse:
    try:
        repo = call.readable_repo()
    except HubError as e:
        headers = {k: v for k, v in e.response().headers.items() if k.lower().startswith("x-error")}
        return _html(f"{call.params['namespace']}/{call.params['name']}", f"<p>{escape(e.message)}</p>",
                     status=e.status, headers=headers)
    head = call.hub.storage.resolve(repo, "main")
    files = sorted(call.hub.storage.files(head.tree).values(), key=lambda f: f.path)
    when = datetime.fromtimestamp(head.created_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = (
        f"<p>{repo.type}{' &middot; private' if repo.private else ''} &middot; main at "
        f"<code>{head.oid[:10]}</code> ({escape(head.title)}, {when})</p>"
        + _view_section(call, repo.type, repo.repo_id, repo.private, files)
        + _file_table(files)
    )
    return _html(repo.repo_id, body)


def _view_section(call: Call, repo_type: str, repo_id: str, private: bool, files: list[FileEntry]) -> str:
    events = [f.path for f in files if "tfevents" in posixpath.basename(f.path)]
    if not events:
        return ""
    folders = {path.split("/", 1)[0] if "/" in path else "" for path in events}
    command = f"HF_ENDPOINT={call.base_url}{' HF_TOKEN=<your token>' if private else ''} hf-summary view {repo_id}"
    command += f" --repo-type {repo_type}" if repo_type != "model" else ""
    command += f" --path {folder}" if len(folders) == 1 and (folder := folders.pop()) else ""
    runs = sorted({posixpath.dirname(path) or "." for path in events})
    return (
        f"<h2>TensorBoard</h2><p>{len(events)} event file(s) in {len(runs)} run folder(s): "
        + ", ".join(f"<code>{escape(run)}</code>" for run in runs)
        + ". View them live in a local TensorBoard with:</p>"
        f"<pre id=\"view-command\">{escape(command)}</pre>"
    )


def _file_table(files: list[FileEntry]) -> str:
    rows = "".join(
        f"<tr><td>{escape(f.path)}</td><td class=\"size\">{f.size:,}</td><td>{'LFS' if f.lfs else ''}</td></tr>"
        for f in files
    )
    return f"<h2>Files ({len(files)})</h2><table><tr><th>path</th><th>bytes</th><th></th></tr>{rows}</table>"


def _html(title: str, body: str, *, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    page = (
        f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{escape(title)} - local Hub</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=headers)
