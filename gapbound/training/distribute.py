"""Running independent jobs (phase-grid cells, (setting, seed) jobs) on one machine or a Dask cluster via joblib.

The simulations hand their independent jobs to ``joblib.Parallel``; inside
:func:`parallel_backend` that call runs on joblib's default process pool, on a
local Dask ``distributed`` cluster, or on an existing cluster whose scheduler
address is given (``pip install gapbound[distributed]``; start one with
``dask scheduler`` on a head node and ``dask worker tcp://HEAD:8786`` on each
machine, each with gapbound installed). Every job is a pure function of its
arguments (seeded data and initialisation), so where it runs does not change
its result (``tests/test_engine_distributed.py`` checks this).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Generator, Iterator, TypeVar

import joblib

__all__ = ["parallel_backend", "closing_on_interrupt"]

T = TypeVar("T")
_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


@contextlib.contextmanager
def closing_on_interrupt(results: Generator[T, None, None]) -> Iterator[Generator[T, None, None]]:
    """Yield a ``joblib.Parallel`` result generator; on Ctrl-C cancel its workers' jobs now, quietly, and re-raise.

    Without it the generator is closed later, while the interpreter exits, and
    joblib's cancellation warning follows the CLI's one-line resume hint. Finished jobs' results were consumed (and
    written) before the interrupt, so nothing finished is lost.
    """
    try:
        yield results
    except KeyboardInterrupt:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results.close()
        raise


@contextlib.contextmanager
def parallel_backend(scheduler: str | None = None, n_workers: int = 2, processes: bool = True,
                     timeout: float = 10.0) -> Iterator[str]:
    """Context in which ``joblib.Parallel`` runs its jobs on ``scheduler``.

    Parameters
    ----------
    scheduler : str, optional
        ``None``: joblib's default (local processes). ``"local"``: start a
        ``distributed.LocalCluster`` of ``n_workers`` single-threaded workers for
        the duration of the context. Anything else: the address of a running
        Dask scheduler (e.g. ``tcp://10.0.0.1:8786``).
    n_workers : int
        Workers of a ``"local"`` cluster.
    processes : bool
        Whether a ``"local"`` cluster's workers are processes (``False``: threads of this process).
    timeout : float
        Seconds to wait for a remote scheduler before giving up.

    Yields
    ------
    str
        A description of where jobs run (for logs).
    """
    if scheduler is None:
        # Ctrl-C reaches the pool's workers too; the semaphores they held are then unlinked by the resource
        # tracker at exit with a "leaked semaphore" warning after the CLI's resume hint. The tracker takes its
        # warning filters from sys.warnoptions when it starts (with the pool), so the benign report is muted there.
        if _QUIET_TRACKER not in sys.warnoptions:
            sys.warnoptions.append(_QUIET_TRACKER)
        yield "joblib (local processes)"
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise ValueError(f"--scheduler {scheduler!r} needs Dask distributed: pip install 'gapbound[distributed]'") from err
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                                                       dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=f"{timeout}s"))
            except (OSError, TimeoutError) as err:
                raise ValueError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} ({err}); "
                                 "start one with `dask scheduler` or pass 'local'") from err
        stack.enter_context(joblib.parallel_config(backend="dask"))
        yield f"dask at {client.scheduler.address} ({len(client.scheduler_info()['workers'])} workers)"
