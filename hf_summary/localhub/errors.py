"""Hub-style error responses.

The client maps errors by the `X-Error-Code` header (huggingface_hub's `hf_raise_for_status`, in
https://github.com/huggingface/huggingface_hub/blob/main/src/huggingface_hub/utils/_http.py); the message travels both
in `X-Error-Message` and in the JSON body `{"error": ...}`.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class HubError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        headers = {"X-Error-Message": _header_safe(self.message), **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def _header_safe(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1").replace("\n", " ").replace("\r", " ")


def bad_request(message: str) -> HubError:
    return HubError(400, message)


def repo_not_found(authenticated: bool) -> HubError:
    """Anonymous callers get 401, authenticated ones 404; neither learns whether the repo exists."""
    if authenticated:
        return HubError(404, "Repository not found", code="RepoNotFound")
    return HubError(401, "Invalid username or password.", code="RepoNotFound")


def revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def entry_not_found(path: str, commit: str | None = None) -> HubError:
    headers = {"X-Repo-Commit": commit} if commit else {}
    return HubError(404, f"Entry not found: {path}", code="EntryNotFound", headers=headers)
