"""The README's synthetic table (test MCC per setting and method, reference values in parentheses), from results JSON.

    python -m paper_figures.synthetic_table results/synthetic_paper results/synthetic_paper_unknown

Reads ``<setting>.json`` (known_z, known_d, unknown) from each folder given, in
order (a later folder's setting replaces an earlier one's), and prints a
markdown table: mean +- std over seeds of the test MCC, the paper's reference value
(``REFERENCE``: the authors' released result files, as the paper reports them) in parentheses, and,
for the unknown setting, a dictionary-MCC row. ``tests/test_readme.py`` checks
that the README's table is exactly this output for the committed results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from gapbound.utils.cli import ArgumentParser, add_debug_arg, run_cli
from gapbound.utils.io import read_json

SETTINGS = {"known_z": "known z", "known_d": "known d", "unknown": "unknown"}
METHODS = ("SAE", "SAE+ITO", "MLP-32", "MLP-256", "MLP-1024", "SC")
# Mean test MCC over 5 runs from the authors' released result files (N = 16, M = 8, K = 3).
REFERENCE: dict[str, dict[str, float]] = {
    "known_z": {"SAE": 0.86, "MLP-32": 0.90, "MLP-256": 0.90, "MLP-1024": 0.95},
    "known_d": {"SAE": 0.61, "SAE+ITO": 0.97, "MLP-32": 0.78, "MLP-256": 0.82},
    "unknown": {"SAE": 0.57, "SAE+ITO": 0.58, "MLP-32": 0.62, "MLP-256": 0.64, "SC": 0.69},
    "unknown_dict": {"SAE": 0.75, "SAE+ITO": 0.75, "MLP-32": 0.79, "MLP-256": 0.85, "SC": 0.84},
}


def load_reports(folders: Sequence[str | Path]) -> dict[str, dict]:
    """Each setting's results JSON from ``folders`` (later folders win); ValueError when none is found."""
    reports: dict[str, dict] = {}
    for folder in map(Path, folders):
        for setting in SETTINGS:
            path = folder / f"{setting}.json"
            if path.exists():
                reports[setting] = read_json(path)
    if not reports:
        raise ValueError(f"no known_z/known_d/unknown .json results in {', '.join(map(str, folders))}")
    return reports


def _cell(mean: float | None, std: float | None, ref: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f} ± {std:.3f} ({'—' if ref is None else f'{ref:.2f}'})"


def markdown_table(reports: dict[str, dict]) -> str:
    """The markdown table of ``reports`` (setting -> results JSON), one row per setting plus unknown's dictionary MCC."""
    lines = ["| setting | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
    for setting, label in SETTINGS.items():
        if setting not in reports:
            continue
        methods = reports[setting]["methods"]
        rows = [("mcc", label, setting)] + ([("dict_mcc", "unknown: dictionary MCC", "unknown_dict")] if setting == "unknown" else [])
        for key, row_label, ref_key in rows:
            cells = [
                _cell(methods[m].get(f"{key}_mean"), methods[m].get(f"{key}_std"), REFERENCE[ref_key].get(m))
                if m in methods else "—"
                for m in METHODS
            ]
            lines.append(f"| {row_label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table for the folders on the command line (exit 2 with one line when none holds results)."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="results folders holding <setting>.json")
    add_debug_arg(parser)

    def run(args_list: Sequence[str] | None) -> int:
        args = parser.parse_args(args_list)
        reports = load_reports(args.folders)
        try:
            print(markdown_table(reports))
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ValueError(f"{', '.join(args.folders)}: not synthetic results ({type(err).__name__}: {err}); "
                             "give folders written by python -m simulations.synthetic") from None
        return 0

    return run_cli(run, argv, resume_hint=None)


if __name__ == "__main__":
    sys.exit(main())
