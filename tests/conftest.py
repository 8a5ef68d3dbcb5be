"""Shared test fixtures: device parametrisation and thread limits."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# CI replays the same examples on every run (a failure there is reproducible, never a coin flip);
# locally hypothesis explores new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Tests are many small problems: one thread avoids oversubscribing the 2-core CI machine.
torch.set_num_threads(1)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Run a test on the CPU and, where present, on CUDA."""
    return request.param
