"""The scenarios of `scripts/bench.py`, a module each: `run(bench)` measures, `rows(results)` gives the table's
rows and `workload(profile, results)` says what ran."""
