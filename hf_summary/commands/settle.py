"""`hf-summary settle REPO`: move the pushes parked in the overflow bucket into the repo
(`hf_summary.settle.settle`)."""

from __future__ import annotations

import argparse

from hf_summary.commands.common import TOKEN_HELP, Commands, fail, say_to_stderr, stderr_log
from hf_summary.exit_status import ExitStatus

_MAX_LISTED = 10


def register(commands: Commands) -> None:
    settle = commands.add_parser(
        "settle",
        help="move pushes parked in the overflow bucket (the commit budget was spent) into the repo",
        description="A final push that the Hub refused for the repo's commit budget (HTTP 429) is parked in a "
        "Storage Bucket, with a record of where it belongs. This moves every parked file of the repo's branch "
        "into the repo in one commit, exactly once (files the repo already holds are not committed again), "
        "then removes them from the bucket. Needs neither the logdir nor the machine that parked them. Exit "
        "status: 0 when nothing is left parked, 1 when the repo still refuses commits for its budget (run it "
        "again later) or something could not be moved, 2 on a permanent error (token, permissions).",
    )
    settle.add_argument("repo_id", help="the repo the runs push to, e.g. alice/sweep")
    settle.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    settle.add_argument("--revision", default="main", help="the branch (default: main)")
    settle.add_argument("--bucket", default=None,
                        help="the overflow bucket (default: HF_SUMMARY_OVERFLOW_BUCKET, else REPO-hf-summary-overflow)")
    settle.add_argument("--token", default=None, help=TOKEN_HELP)
    settle.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    settle.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
    from hf_summary.hub import BUCKET, HubError, PermanentHubError, RateLimitedError, open_client
    from hf_summary.overflow import overflow_bucket
    from hf_summary.settle import settle

    repo = open_client(repo_id=args.repo_id, repo_type=args.repo_type, revision=args.revision,
                       endpoint=args.endpoint, token=args.token)
    bucket = open_client(repo_id=args.bucket or overflow_bucket(args.repo_id), repo_type=BUCKET,
                         endpoint=args.endpoint, token=args.token)
    try:
        with stderr_log("settle"):
            report = settle(repo, bucket, say=say_to_stderr("settle"))
    except RateLimitedError as exc:
        when = f"in about {exc.retry_after:.0f} s" if exc.retry_after is not None else "later"
        return fail("settle", f"the repo's commit budget is still spent ({exc}); nothing was moved. Run settle "
                    f"again {when}", ExitStatus.INCOMPLETE)
    except HubError as exc:
        return fail("settle", f"the Hub failed: {exc}",
                    ExitStatus.FAILED if isinstance(exc, PermanentHubError) else ExitStatus.INCOMPLETE)
    if not report.records:
        print(f"{args.repo_type} {args.repo_id} @ {args.revision}: nothing to settle in bucket {report.bucket}")
        return ExitStatus.OK
    print(f"Bucket:          {report.bucket}, {report.records} parked push(es)")
    print(f"Committed:       {report.committed_files} file(s), {report.committed_bytes} bytes"
          + (f" (Hub commit {report.commit})" if report.commit else ""))
    print(f"Already there:   {report.already_in_repo} file(s) the repo held already")
    print(f"Removed:         {report.settled_records} parked push(es) from the bucket")
    for line in report.unreadable:
        fail("settle", f"unreadable record {line}")
    for path in report.missing[:_MAX_LISTED]:
        fail("settle", f"{path} is neither intact in the bucket nor in the repo")
    for path in report.conflicts[:_MAX_LISTED]:
        fail("settle", f"{path} holds other content in the repo; its parked copy is kept")
    return ExitStatus.OK if report.complete else ExitStatus.INCOMPLETE
