"""What both push targets' clients share of huggingface_hub: the `HfApi` they talk through, the check that a
token may write, and the process-wide settings (offline mode, request timeouts, repo id rules)."""

from __future__ import annotations

import httpx2
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import set_client_factory, validate_repo_id
from huggingface_hub.utils._http import hf_request_event_hook

from hf_summary.hub.errors import PermanentHubError, hub_errors


def new_api(endpoint: str | None, token: str | None) -> HfApi:
    """`endpoint=None` means huggingface_hub's default (`HF_ENDPOINT` or huggingface.co); `token=None`
    means the client's usual lookup (`HF_TOKEN`, then the stored login)."""
    return HfApi(endpoint=endpoint, token=token, library_name="hf-summary")


def check_write_access(api: HfApi, target_id: str) -> None:
    """Raise `PermanentHubError` when `api`'s token clearly cannot write to `target_id` (a repo or a
    bucket): a read-only token, or a namespace that is neither the token's user nor one of its organisations.
    (Creating an existing public repo alone does not tell: it succeeds for any reader.)"""
    with hub_errors():
        me = api.whoami()
    namespace = target_id.split("/")[0] if "/" in target_id else me.get("name")
    allowed = {me.get("name")} | {org.get("name") for org in me.get("orgs") or []}
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PermanentHubError(f"the token of {me.get('name')!r} is read-only")
    if namespace not in allowed:
        raise PermanentHubError(f"{me.get('name')!r} may not write to the namespace {namespace!r}")


def offline_mode() -> bool:
    """Whether huggingface_hub refuses network calls (`HF_HUB_OFFLINE`, with its own parsing of truthy values;
    read when huggingface_hub is imported)."""
    return constants.is_offline_mode()


def check_repo_id(repo_id: object) -> None:
    """Raise ValueError with a readable message when `repo_id` cannot name a Hub repo."""
    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"repo_id must be a non-empty string like 'username/my-run', got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"Invalid repo_id {repo_id!r}: {exc}") from None


def use_timeouts(*, connect_s: float = 10.0, io_s: float = 120.0) -> None:
    """Give every request of this process timeouts (huggingface_hub's default client waits forever), so a hung
    Hub is retried instead of blocking a drain past its deadline. Only processes that own their interpreter
    (the uploader, `hf-summary view`) call this: the trainer's own huggingface_hub settings are left alone."""

    def factory() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=httpx2.Timeout(io_s, connect=connect_s),
        )

    set_client_factory(factory)
