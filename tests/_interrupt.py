"""Ctrl-C as a terminal sends it, for tests of the simulations' clean interrupt.

A terminal's Ctrl-C signals the whole foreground process group: the CLI's
process and every joblib / loky worker it started. :func:`interrupt` starts
the command in a new session (its own process group), waits until ``ready()``
holds (e.g. a checkpoint or a finished cell is on disk), sends SIGINT to the
group, and returns the exit status and stderr. Shared by the Ctrl-C tests of
``test_experiment.py``, ``test_fuzz_faults.py`` and ``test_phase.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parents[1]


def interrupt(args: Sequence[str], ready: Callable[[], bool], *, start_timeout: float = 400, end_timeout: float = 300,
              env: dict | None = None) -> tuple[int, str]:
    """Run ``python -m <args>`` in the repository, SIGINT its process group once ``ready()``; ``(returncode, stderr)``.

    Raises ``AssertionError`` if the command ends, or ``start_timeout`` seconds pass, before ``ready()``.
    """
    # SIGINT back to its default in the child: a pytest started in the background by a non-interactive
    # shell ignores SIGINT, and an ignored disposition is inherited across exec (a terminal's does not apply)
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env or {**os.environ, "OMP_NUM_THREADS": "1"},
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + start_timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"{args[0]} ended (exit {proc.returncode}) before it was interrupted: "
                                     f"{proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{args[0]} was not ready to interrupt within {start_timeout} s")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=end_timeout)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err
