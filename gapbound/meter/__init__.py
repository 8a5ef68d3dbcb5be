"""The amortisation gap of a trained SAE: per-sample optimal inference under its own decoder, certified."""

from .cli import main
from .core import GapReport, implied_lam, measure_gap, uncertified_reason

__all__ = ["GapReport", "measure_gap", "implied_lam", "uncertified_reason", "main"]
