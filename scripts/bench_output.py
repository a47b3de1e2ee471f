"""What every benchmark module does with its results: print the Markdown table, and write the table and the
figures where ``--markdown`` and ``--json`` say."""

from __future__ import annotations

import json
from pathlib import Path


def emit(table: str, figures: object, *, json_path: Path | None, markdown_path: Path | None) -> None:
    print(table)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if markdown_path:
        markdown_path.write_text(table)
