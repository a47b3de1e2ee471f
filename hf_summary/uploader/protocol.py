"""The pipe protocol between a trainer (or a watcher) and the uploader child it starts: one definition for
both ends.

The token travels as the first line on the child's stdin (JSON, so that any token survives), never in argv
or the environment. `hf-summary watch --token-from-stdin` takes its token the same way. Later lines are
requests, each a word and, for the numbered ones, the request's number:

- `PUSH` `N`: push everything sealed so far; `PREEMPT` `N`: the same, urgently, as the first
  step of a bounded final drain (the trainer got SIGTERM); `CLOSE`: final push, then exit. End of file
  means the trainer is gone.

The child answers on a second pipe (the reverse channel):

- `SEAL`: seal the open segments now (the uploader was preempted, and the trainer may not know it);
- `DRAINED` `N`: nothing is pending any more, counting everything sealed before request `N`.

Request numbers grow with each request, so a trainer that asked for `N` knows that `drained M` with
`M >= N` covers what it had sealed before asking: it can wait for that on its way out, with no SQLite and
no lock that the code its signal handler interrupted might hold.
"""

from __future__ import annotations

import json
from typing import IO

PUSH = "push"
PREEMPT = "preempt"
CLOSE = "close"
SEAL = "seal"
DRAINED = "drained"
NUMBERED = frozenset({PUSH, PREEMPT, DRAINED})


def token_line(token: str | None) -> bytes:
    """The first line a child reads: the token (`None`: the child's usual lookup)."""
    return (json.dumps({"token": token}) + "\n").encode()


def read_token(stream: IO[str]) -> str | None:
    """Read the first line of `stream` (see `token_line`); `None` at end of file."""
    return json.loads(stream.readline() or "{}").get("token")


def encode(word: str, number: int | None = None) -> bytes:
    """One line of the protocol: `word`, and its number for the numbered ones."""
    return (word if number is None else f"{word} {number}").encode() + b"\n"


def decode(line: str) -> tuple[str, int | None]:
    """A line's word and number (`None` when it carries none, or none that can be read)."""
    word, _, argument = line.strip().partition(" ")
    return word, int(argument) if word in NUMBERED and argument.isascii() and argument.isdigit() else None
