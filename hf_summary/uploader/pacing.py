"""Budget-aware pacing of one uploader's commits.

The Hub allows about 128 commits per hour per repo, shared by every writer of the repo: 32 jobs of a sweep at a
5-minute tick already ask for 384. A commit refused for the budget (HTTP 429) says so, often with
`Retry-After`. Retrying on a fixed schedule then spends every slot the moment it frees, and leaves none for a
preempted job's final push. So an uploader that meets 429 spaces its commits: a *gap* between commits that
doubles at each refusal (at least the run's tick, at most `MAX_GAP_S`) and halves at each accepted
commit (gone once below the tick). While the trainer waits on `close()` (and while preempted) the uploader
does not space its commits: see the uploader. Segments sealed meanwhile ride in the next commit, so nothing is dropped:
each commit carries more. After a refusal the next try comes the gap *after* the time the Hub named, so the
slot that frees there stays free a while for someone in a hurry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_GAP_S = 900.0


@dataclass
class Refusal:
    """What `CommitPacer.refused` decided: wait `delay_s` before the next try; `first` is true for the
    first refusal after accepted commits (worth a line in the journal's history)."""

    delay_s: float
    gap_s: float
    first: bool  # the first refusal since the budget was last no bottleneck


class CommitPacer:
    """The gap between one uploader's commits while the repo's commit budget is the bottleneck."""

    def __init__(self, tick_s: float):
        self.tick_s = tick_s
        self.gap_s = 0.0
        self.refused_at: float | None = None  # wall time of the first refusal while budget-bound

    @property
    def budget_bound(self) -> bool:
        """Whether commits are being spaced for the budget now."""
        return self.gap_s > 0

    def refused(self, retry_after: float | None) -> Refusal:
        """A commit met 429: widen the gap; the next try waits for the Hub's hint (if any) plus the gap."""
        first = self.refused_at is None
        if first:
            self.refused_at = time.time()
        self.gap_s = min(MAX_GAP_S, max(2 * self.gap_s, self.tick_s))
        return Refusal(delay_s=(retry_after or 0.0) + self.gap_s, gap_s=self.gap_s, first=first)

    def committed(self) -> float:
        """A commit went through: the seconds to wait before the next one (0 when the budget is no bottleneck);
        the gap narrows for the one after."""
        gap = self.gap_s
        self.gap_s = gap / 2 if gap / 2 >= self.tick_s else 0.0
        if not self.gap_s:
            self.refused_at = None
        return gap
