"""`HFSummaryWriter`, the public writer, and its parts, one job per module:

- `summary_writer`: the class, its constructor and its tensorboardX surface (`add_*`);
- `run_writer`: `RunWriter`, the `FileWriter` surface of one run directory;
- `rolling`: segments and rolls (`_write`, the hot path's end; the prepared next
  segments; sealing and recording in the journal);
- `ticker`: the ticker thread (a roll and a push every `commit_every`);
- `held`: events held in memory while the logdir refuses writes (disk episodes);
- `recovery`: a logdir removed under the running writer;
- `lifecycle`: background parts started and stopped, `push_to_hub`, `close()`,
  interpreter exit and SIGTERM;
- `startup`: the constructor's checks (arguments, logdir, journal, repo access, another
  run's files in the repo folder).

The class is made of the mixins of `rolling`, `ticker`, `held`, `recovery` and `lifecycle`, which share
its state (each mixin's docstring names what it uses of the others). Imports run one way: `summary_writer`
imports the others; `lifecycle` and `recovery` import `rolling` and `startup`; `run_writer` names
`rolling`'s class in a type hint; the rest import nothing of the package.
"""

from hf_summary.writer.startup import EXISTING_RUN_CHOICES, ExistingRunError
from hf_summary.writer.summary_writer import HFSummaryWriter

__all__ = ["EXISTING_RUN_CHOICES", "ExistingRunError", "HFSummaryWriter"]
