"""Benchmark output: the Markdown table printed (and written where `--markdown` says), the figures written as
JSON where `--json` says, and the rows of `bench.py`'s table, one value per writer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def emit(table: str, figures: object, *, json_path: Path | None, markdown_path: Path | None) -> None:
    print(table)
    if json_path:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if markdown_path:
        markdown_path.write_text(table)


@dataclass
class Row:
    scenario: str
    label: str
    values: dict[str, Any]
    unit: str = ""
    digits: int = 2
    target: str = ""
    met: bool | None = None
    notes: dict[str, str] = field(default_factory=dict)  # shown instead of a missing value
    suffix: dict[str, str] = field(default_factory=dict)  # shown after a value


def fmt(value: Any, digits: int, unit: str, note: str | None = None) -> str:
    if value is None:
        return note or "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = f"{value:.{digits}f}"
    return f"{text}{unit}"


def check(value: Any, test: Callable[[Any], bool]) -> bool | None:
    return None if value is None else bool(test(value))



def render_rows(rows: list[Row], writers: tuple[str, ...], headings: tuple[str, ...]) -> list[str]:
    """The Markdown lines of a table of `rows`: scenario, figure, one column per writer, target, met."""
    lines = [f"| scenario | figure | {' | '.join(headings)} | target | met |",
             "|---|---|" + "--:|" * len(writers) + "---|:-:|"]
    for row in rows:
        cells = [fmt(row.values.get(w), row.digits, row.unit, row.notes.get(w)) + row.suffix.get(w, "")
                 for w in writers]
        met = {True: "✅", False: "❌", None: ""}[row.met]
        lines.append(f"| {row.scenario} | {row.label} | {' | '.join(cells)} | {row.target} | {met} |")
    return lines
