"""The README's quick-start example runs as written and says what it claims."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    """The Python block under the README's "Quick start" heading."""
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no ```python block under '## Quick start'"
    return match.group(1)


def test_quick_start_example_runs_as_written(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _example()], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The example prints its own checks; a False there means a claim in the README is wrong.
    assert "False" not in proc.stdout, proc.stdout


def test_synthetic_table_is_rendered_from_the_committed_results() -> None:
    """The README's synthetic MCC table is exactly what ``paper_figures.synthetic_table`` renders from results/."""
    from paper_figures.synthetic_table import load_reports, markdown_table

    root = README.parent
    table = markdown_table(load_reports([root / "results" / f"synthetic_paper{s}" for s in ("", "_known_d", "_unknown")]))
    assert table in README.read_text(), "README's synthetic table is stale: paste the output of\n" + table
