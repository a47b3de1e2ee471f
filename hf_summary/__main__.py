import sys

from hf_summary.cli import main

sys.exit(main())
