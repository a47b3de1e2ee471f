"""`hf-summary status`: a run's state, or one line per run under a directory, rendered from
[`hf_summary.status.run_status`][hf_summary.status.run_status] (which reads only the journal: no Hub client,
no numpy)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from hf_summary.commands.common import Commands, fail
from hf_summary.exit_status import ExitStatus


def register(commands: Commands) -> None:
    status = commands.add_parser(
        "status",
        help="tell where a run stands",
        description="Show a run's state (offline, live, preempted, closed), its pending segments and bytes, the age "
        "of the oldest pending segment, the last commit and the last error, whether an uploader is alive, and "
        "where the run is pushed. On a directory that is not a run, one line for every run under it. Reads only "
        "the journals (LOGDIR/.hf_summary); never contacts the Hub.",
    )
    status.add_argument("logdir", type=Path, metavar="PATH", help="a writer's logdir, or a directory of runs")
    status.add_argument("--json", action="store_true",
                        help="print one JSON object (a list of them for a directory of runs) instead of text")
    status.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
    from hf_summary.runs import NoRunsError, find_runs, is_run
    from hf_summary.status import StatusError, run_status

    if not is_run(args.logdir) and args.logdir.is_dir():
        try:
            return _print_statuses(find_runs([args.logdir]), as_json=args.json)
        except NoRunsError as exc:
            return fail("status", exc)
    try:
        status = run_status(args.logdir)
    except StatusError as exc:
        return fail("status", exc)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return ExitStatus.OK
    print(f"Run:        {args.logdir}")
    print(f"Repo:       {status['repo_type']} {status['repo_id']} @ {status['revision']}, "
          f"path {status['path_in_repo']}")
    age = status["oldest_pending_age_s"]
    print(f"Pending:    {status['pending_segments']} segment(s), {status['pending_bytes']} bytes"
          + (f", oldest {age:.0f} s" if age is not None else ""))
    print(f"Open:       {status['open_segments']} segment(s) being written")
    print(f"Committed:  {status['committed_segments']} segment(s)")
    commit = status["last_commit"]
    print("Last commit: " + (f"{commit['oid']} at {_when(commit['at'])} {commit['url'] or ''}" if commit else "none"))
    error = status["last_error"]
    print("Last error: " + (f"{_when(error['at'])}: {error['message']}" if error else "none"))
    print("Uploader:   " + (f"alive (pid {status['uploader_pid']})" if status["uploader_alive"] else "not running"))
    if status["conflicting_segments"]:
        print(f"Conflicts:  {status['conflicting_segments']} segment(s) not pushed: their path on the Hub holds "
              "another run's file (see the last error)")
    if preemption := status["preemption"]:
        print(f"Preempted:  {_when(preemption['at'])} by {preemption['signal']}; "
              + _final_push(preemption, status["pending_segments"]))
    if disk := status.get("disk"):
        from hf_summary.backlog import describe_episode

        print(f"Disk:       {describe_episode(disk)}")
    if budget := status["budget"]:
        print(f"Budget:     the repo's commit budget is the bottleneck: the Hub refused commits (429) since "
              f"{_when(budget['since'])}; commits are spaced by {budget['gap_s']:.0f} s")
    if parked := status["parked"]:
        print(f"Parked:     {parked['segments']} segment(s), {parked['bytes']} bytes, in bucket {parked['bucket']} "
              f"since {_when(parked['since'])} (the commit budget was spent at the final push); `hf-summary settle "
              f"{status['repo_id']}` moves them into the repo")
    print(f"State:      {_state(status)}")
    if status["pending_segments"] and not status["uploader_alive"]:
        print(f"Next:       hf-summary {'sync' if status['offline'] else 'recover'} {args.logdir}")
    return ExitStatus.OK


def _final_push(preemption: dict, pending_now: int) -> str:
    final = preemption["final_push"]
    if final is None:
        return (f"the final drain did not finish (the process was killed); {pending_now} segment(s) pending "
                "now")
    if final["pending"]:
        return f"the final drain ended with {final['pending']} segment(s) pending"
    return (f"everything sealed was on the Hub after the final drain ({final['segments']} segment(s) in "
            f"{len(final['commits'])} commit(s) during it; last commit {final['last_commit']})")


def _print_statuses(logdirs: list[Path], *, as_json: bool) -> ExitStatus:
    """One line (or JSON object) per run; exit status 2 if a journal was unusable."""
    from hf_summary.runs import read_all
    from hf_summary.status import StatusError, run_status

    def status_of(logdir: Path) -> dict:
        try:
            return {"logdir": str(logdir), **run_status(logdir)}
        except StatusError as exc:
            return {"logdir": str(logdir), "error": str(exc)}

    statuses = read_all(status_of, logdirs)
    unusable = sum("error" in status for status in statuses)
    if as_json:
        print(json.dumps(statuses, indent=2, sort_keys=True))
        return ExitStatus.FAILED if unusable else ExitStatus.OK
    for status in statuses:
        if "error" in status:
            print(f"{status['logdir']}  unusable: {status['error']}")
            continue
        commit = status["last_commit"]
        print(f"{status['logdir']}  {status['repo_type']} {status['repo_id']}:{status['path_in_repo']}  "
              f"{_state(status)}  last commit " + (f"{commit['oid'][:12]} at {_when(commit['at'])}" if commit else "none"))
    return ExitStatus.FAILED if unusable else ExitStatus.OK


def _state(status: dict) -> str:
    """`offline, 3 segment(s) pending, 1 open` (`offline, preempted, ...` when it ended by a signal)."""
    preempted = ", preempted" if status["preempted"] and status["state"] != "preempted" else ""
    text = f"{status['state']}{preempted}, {status['pending_segments']} segment(s) pending"
    return text + (f", {status['open_segments']} open" if status["open_segments"] else "")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
