"""What the benchmark modules of `scripts/` share: the trainer harness (`harness`), statistics with one
percentile definition (`stats`), output (`output`), a trainer's environment (`trainer`), stopping a job as a
scheduler does (`stop`), the garbage collections during a measured loop (`gcpauses`) and what they read back
from the Hub and from event files (`hub`). Each scenario is a module of its own (`bench_scenarios`, and the
`bench_*.py` scripts)."""
