"""Non-negative LASSO solvers side by side on a grid of problem shapes (one process, one thread each).

Part ``grid`` (default): every solver minimises the same per-sample problem
``0.5 ||x - D s||^2 + lam ||s||_1, s >= 0`` on every cell; the metric is the
CPU time (``time.process_time``, the whole process, one thread) to codes whose
summed objective is within ``--rtol`` (1e-6) relative of the best objective any
solver found on that cell. Solvers with a tolerance run a ladder of tolerances,
loosest first, and the first that reaches counts (tighter ones only cost
more). Every objective is evaluated by one float64 function on the codes
returned.

Solvers: gapbound's ``fista`` (one call: the dictionary's set-up, including the
float64 Gram matrix, inside the timer), gapbound's ``SparseCoder`` with its
set-up kept (built and warmed before the timer: what repeated calls under one
dictionary cost), spams' LARS (``spams.lasso``, ``mode=2, pos=True``), skglm's
and celer's ``Lasso(positive=True)`` (one fit per sample, ``alpha = lam / M``),
scikit-learn's ``sparse_encode`` (``lasso_cd``, ``lasso_lars``, ``positive=True``).

Cells: Gaussian dictionaries with N in {32, 256, 1024, 4096}, M = N / 4 and lam
in {1e-3, 1e-2, 5e-2} x lam_max (batch 32); a coherent dictionary (mutual
coherence about 0.9); a dictionary learned on scikit-learn's digits
(``MiniBatchDictionaryLearning``, 256 atoms of 64 pixels); noisy observations
(noise as large as the signal); batches of 1 and 1024. ``lam_max`` is the
largest ``d_j . x`` over the batch. A solver whose estimated time on a cell
(from a run on a few of its samples) exceeds ``--max-seconds`` is skipped and
says so.

Part ``ito``: warm-started FISTA against the authors'-style Adam-on-exp baseline
on known D (see :func:`ito_rows`), and the same exact solve from zero codes.

Part ``pair``: ``SparseCoder`` (kept) and spams' LARS on the ``--cells`` with their calls
alternating in one loop (both see the same load; ``--repeats`` calls each, minimum CPU
time), for the sub-0.1 ms cells where the grid's back-to-back repeats are at the mercy of
the load.

Part ``warm``: ``SparseCoder`` from starts between the optimum and noise against a
cold start on the same cell, CPU time interleaved (see :func:`warm_rows`).

Part ``screen``: what gap-safe screening could save the compiled active set on the
large-N cells (see :func:`screen_rows`): an upper bound, no overhead counted.

Run (from the repository root; ``PYTHONPATH=.`` where gapbound is not installed from this checkout)::

    OMP_NUM_THREADS=1 python benchmarks/solvers.py --json results/bench_solvers_grid.json --figure results/bench_solvers_grid.png
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --parts warm ito --json results/bench_solvers_ito.json
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --parts pair --cells "N32 M8" --repeats 400 --json results/bench_solvers_pair.json
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --parts screen --json results/bench_solvers_screen.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from gapbound.inference import SparseCoder, duality_gap, fista, solve
from gapbound.inference.compiled import run_numpy
from gapbound.inference.screening import gap_safe_screen
from gapbound.utils.flops import count_flops
from gapbound.utils.io import atomic_write_json

# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One problem shape: dictionary kind, atoms N, dimension M, lam as a fraction of lam_max, batch n."""

    kind: str
    N: int
    M: int
    lam_frac: float
    n: int

    @property
    def name(self) -> str:
        return f"{self.kind} N{self.N} M{self.M} lam{self.lam_frac:g} n{self.n}"


def default_cells() -> list[Cell]:
    """The grid of issue 14."""
    cells = [Cell("gaussian", N, N // 4, f, 32) for N in (32, 256, 1024, 4096) for f in (1e-3, 1e-2, 5e-2)]
    cells += [Cell("coherent", 256, 64, f, 32) for f in (1e-2, 5e-2)]
    cells += [Cell("digits", 256, 64, f, 32) for f in (1e-2, 5e-2)]
    cells += [Cell("noisy", 256, 64, f, 32) for f in (1e-3, 1e-2)]
    cells += [Cell("gaussian", N, N // 4, 1e-2, n) for N in (256, 1024, 4096) for n in (1, 1024)]
    return cells


def _unit_columns(D: np.ndarray) -> np.ndarray:
    return D / np.linalg.norm(D, axis=0)


def coherent_dictionary(M: int, N: int, rng: np.random.Generator, target: float = 0.9) -> np.ndarray:
    """Gaussian atoms pulled towards one shared direction until the mutual coherence is about ``target``."""
    common = rng.normal(size=(M, 1))
    G = rng.normal(size=(M, N)) / np.sqrt(M)
    lo, hi = 0.0, 10.0
    for _ in range(40):  # bisection on the weight of the shared direction
        w = 0.5 * (lo + hi)
        D = _unit_columns(G + w * common / np.linalg.norm(common))
        mu = np.abs(D.T @ D - np.eye(N)).max()
        lo, hi = (w, hi) if mu < target else (lo, w)
    return D


def digits_dictionary(N: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A dictionary learned on scikit-learn's digits (64 pixels, centred rows) and the held-out digits."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import MiniBatchDictionaryLearning

    X = load_digits().data.astype(np.float64)
    X -= X.mean(1, keepdims=True)
    X /= np.linalg.norm(X, axis=1, keepdims=True).clip(1e-12)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    train, test = X[order[:1400]], X[order[1400:]]
    dl = MiniBatchDictionaryLearning(n_components=N, alpha=0.1, batch_size=64, max_iter=20, random_state=seed,
                                     fit_algorithm="cd", positive_code=True)
    dl.fit(train)
    return _unit_columns(dl.components_.T.copy()), test


def make_cell(cell: Cell, seed: int) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """``(D, X, lam, info)`` of a cell: data are sparse non-negative codes through D plus noise."""
    # zlib.crc32, not hash(): str hashes are salted per process, which would change the data between runs.
    rng = np.random.default_rng([seed, cell.N, cell.M, cell.n, zlib.crc32(cell.kind.encode())])
    if cell.kind == "digits":
        D, pool = digits_dictionary(cell.N, seed)
        X = pool[rng.choice(len(pool), size=cell.n, replace=cell.n > len(pool))]
    else:
        D = coherent_dictionary(cell.M, cell.N, rng) if cell.kind == "coherent" else _unit_columns(rng.normal(size=(cell.M, cell.N)))
        K = max(2, cell.N // 32)
        S = np.zeros((cell.n, cell.N))
        for i in range(cell.n):
            S[i, rng.choice(cell.N, size=K, replace=False)] = np.abs(rng.normal(size=K)) + 0.1
        signal = S @ D.T
        noise = 1.0 if cell.kind == "noisy" else 0.01
        X = signal + noise * signal.std() * rng.normal(size=signal.shape)
    lam_max = float((X @ D).max())
    info = {"lam_max": lam_max, "coherence": float(np.abs(D.T @ D - np.eye(D.shape[1])).max())}
    return D, X, cell.lam_frac * lam_max, info


def objective(D: np.ndarray, X: np.ndarray, S: np.ndarray, lam: float) -> float:
    """Summed objective of codes ``S`` (clipped at 0), the one evaluator every solver is judged by."""
    S = np.maximum(S, 0.0)
    R = X - S @ D.T
    return float(0.5 * (R * R).sum() + lam * S.sum())


# --------------------------------------------------------------------------- solvers

# A solver maps (D, X, lam, tol) to codes (n x N numpy); tol None where it has none.
SolverFn = Callable[[np.ndarray, np.ndarray, float, Any], np.ndarray]


def _per_sample(model: Callable[[float], Any]) -> SolverFn:
    def run(D: np.ndarray, X: np.ndarray, lam: float, tol: Any) -> np.ndarray:
        S = np.empty((X.shape[0], D.shape[1]))
        for i in range(X.shape[0]):
            S[i] = model(tol).fit(D, X[i]).coef_
        return S
    return run


def peer_solvers(M: int, lam: float) -> dict[str, tuple[SolverFn, list[Any]]]:
    """The peers that import here: name -> (run, tolerance ladder)."""
    out: dict[str, tuple[SolverFn, list[Any]]] = {}
    try:
        import spams

        def spams_lars(D, X, lam, tol):
            A = spams.lasso(np.asfortranarray(X.T), D=np.asfortranarray(D), lambda1=lam, mode=2, pos=True, numThreads=1)
            return np.asarray(A.todense()).T
        out["spams LARS"] = (spams_lars, [None])
    except ImportError:
        print("spams not installed (pip install spams-bin): skipped", file=sys.stderr)
    try:
        from skglm import Lasso as SkglmLasso
        out["skglm AndersonCD"] = (_per_sample(lambda tol: SkglmLasso(alpha=lam / M, positive=True, fit_intercept=False, tol=tol)),
                                   [1e-4, 1e-6, 1e-8, 1e-10])
    except ImportError:
        print("skglm not installed: skipped", file=sys.stderr)
    try:
        from celer import Lasso as CelerLasso
        out["celer"] = (_per_sample(lambda tol: CelerLasso(alpha=lam / M, positive=True, fit_intercept=False, tol=tol)),
                        [1e-4, 1e-6, 1e-8, 1e-10])
    except ImportError:
        print("celer not installed: skipped", file=sys.stderr)
    from sklearn.decomposition import sparse_encode

    for algo in ("lasso_cd", "lasso_lars"):
        out[f"sklearn {algo}"] = (lambda D, X, lam, tol, a=algo: sparse_encode(X, D.T, algorithm=a, alpha=lam, positive=True), [None])
    return out


def gapbound_solvers(D: np.ndarray, X: np.ndarray, lam: float) -> dict[str, tuple[SolverFn, list[Any]]]:
    """gapbound's exact solver, one call and with its set-up kept; tolerances relative to the mean 0.5||x||^2."""
    scale = float(0.5 * (X * X).sum(1).mean())
    ladder = [1e-8 * scale, 1e-11 * scale]
    coder: dict[float, SparseCoder] = {}
    for tol in ladder:  # built and warmed (whole Gram matrix, kernel) outside the timer: the kept state
        coder[tol] = SparseCoder(D, lam, tol=tol)
        coder[tol].atoms.G64  # noqa: B018
        coder[tol].solve(X[:1])
    return {
        "gapbound fista (one call)": (lambda D, X, lam, tol: fista(D, X, lam, tol=tol).codes.numpy(), ladder),
        "gapbound SparseCoder (kept)": (lambda D, X, lam, tol: coder[tol].solve(X).codes.numpy(), ladder),
    }


def cpu_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Minimum process CPU time over ``repeats`` calls (one repeat if the first took over 0.5 s), and the last result."""
    best, out = float("inf"), None
    for r in range(repeats):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
        if best > 0.5:
            break
    return best, out


def run_cell(cell: Cell, seed: int, rtol: float, repeats: int, max_seconds: float) -> list[dict]:
    """Every solver on one cell; rows with the CPU time to reach the best objective within ``rtol``."""
    D, X, lam, info = make_cell(cell, seed)
    solvers = {**gapbound_solvers(D, X, lam), **peer_solvers(D.shape[0], lam)}
    runs: dict[str, list[tuple[Any, float, float, np.ndarray]]] = {}
    skipped: dict[str, float] = {}
    probe = X[: min(4, cell.n)]
    for name, (fn, ladder) in solvers.items():
        # Too slow for this cell? Estimate from a few samples at the loosest tolerance (gapbound's
        # solvers, the subject, always run).
        t_probe, _ = cpu_time(lambda: fn(D, probe, lam, ladder[0]), 1)
        estimate = t_probe * cell.n / probe.shape[0]
        if estimate > max_seconds and not name.startswith("gapbound"):
            skipped[name] = estimate
            print(f"  {name:<28} skipped (estimated {estimate:.0f} s)", file=sys.stderr, flush=True)
            continue
        runs[name] = []
        for tol in ladder:
            t, S = cpu_time(lambda: fn(D, X, lam, tol), repeats)
            runs[name].append((tol, t, objective(D, X, S, lam), S))
    best = min(obj for r in runs.values() for (_, _, obj, _) in r)
    rows = []
    for name in solvers:
        row = {"cell": cell.name, **asdict(cell), "lam": lam, **info, "solver": name, "best_objective": best,
               "load_1min": os.getloadavg()[0]}
        if name in skipped:
            rows.append({**row, "cpu_s": None, "reached": False, "skipped_estimate_s": skipped[name]})
            continue
        reached = [(t, tol, obj, S) for (tol, t, obj, S) in runs[name] if (obj - best) <= rtol * abs(best)]
        tol, t, obj, S = runs[name][-1]
        if reached:
            t, tol, obj, S = min(reached, key=lambda z: z[0])
        row.update({"cpu_s": t if reached else None, "reached": bool(reached), "tol": tol, "objective": obj,
                    "rel_excess": (obj - best) / abs(best), "max_support": int((S > 0).sum(1).max()),
                    "ladder": [{"tol": a, "cpu_s": b, "rel_excess": (c - best) / abs(best)} for (a, b, c, _) in runs[name]]})
        if name.startswith("gapbound"):  # certificates: the returned gap bounds the excess over the best objective
            gap = duality_gap(torch.as_tensor(D), torch.as_tensor(X), torch.as_tensor(np.maximum(S, 0)), lam)
            row["max_duality_gap"] = float(gap.max())
            row["certificate_valid"] = bool(obj - float(gap.sum()) <= best + 1e-12 * abs(best))
        rows.append(row)
    spams_t = next((r["cpu_s"] for r in rows if r["solver"] == "spams LARS"), None)
    sk_t = [r["cpu_s"] for r in rows if r["solver"].startswith("sklearn") and r["cpu_s"] is not None]
    for r in rows:
        r["vs_spams"] = spams_t / r["cpu_s"] if (spams_t and r["cpu_s"]) else None
        r["vs_sklearn_fastest"] = min(sk_t) / r["cpu_s"] if (sk_t and r["cpu_s"]) else None
        mark = "reached" if r["reached"] else ("skipped" if r["cpu_s"] is None and "skipped_estimate_s" in r else "NOT reached")
        t = "-" if r["cpu_s"] is None else f"{r['cpu_s']:.4f}"
        print(f"  {r['solver']:<28} {t:>9} s  {mark}", file=sys.stderr, flush=True)
    return rows


def warm_up(seed: int) -> None:
    """Run every solver once on a small problem, untimed: numba compiles (or loads) its kernels on first use."""
    D, X, lam, _ = make_cell(Cell("gaussian", 64, 16, 1e-2, 4), seed)
    for fn, ladder in {**gapbound_solvers(D, X, lam), **peer_solvers(D.shape[0], lam)}.values():
        fn(D, X, lam, ladder[0])


def grid_table(rows: list[dict]) -> str:
    """Markdown table: per cell, CPU seconds of each solver (time to the best objective within rtol)."""
    names = list(dict.fromkeys(r["solver"] for r in rows))
    out = ["| cell | " + " | ".join(names) + " | kept / spams | one call / spams | kept / sklearn best |",
           "|---" * (len(names) + 4) + "|"]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        sub = {r["solver"]: r for r in rows if r["cell"] == cell}

        def fmt(r: dict | None) -> str:
            if r is None:
                return "-"
            if r["cpu_s"] is None:
                return f"skip (~{r['skipped_estimate_s']:.0f} s)" if "skipped_estimate_s" in r else f"not reached ({r['rel_excess']:.0e})"
            return f"{r['cpu_s']:.4f}"

        def ratio(name: str, key: str) -> str:
            v = sub.get(name, {}).get(key)
            return "-" if v is None else f"{v:.2f}x"

        out.append(f"| {cell} | " + " | ".join(fmt(sub.get(n)) for n in names) + " | "
                   + ratio("gapbound SparseCoder (kept)", "vs_spams") + " | " + ratio("gapbound fista (one call)", "vs_spams")
                   + " | " + ratio("gapbound SparseCoder (kept)", "vs_sklearn_fastest") + " |")
    return "\n".join(out)


def summary(rows: list[dict]) -> dict:
    """Geometric means and the cells meeting the issue's bars, per gapbound variant."""
    out = {}
    for name in ("gapbound SparseCoder (kept)", "gapbound fista (one call)"):
        sub = [r for r in rows if r["solver"] == name]
        vs = [r["vs_spams"] for r in sub if r["vs_spams"]]
        vk = [r["vs_sklearn_fastest"] for r in sub if r["vs_sklearn_fastest"]]
        out[name] = {
            "cells": len(sub),
            "geomean_vs_spams": float(np.exp(np.mean(np.log(vs)))) if vs else None,
            "geomean_vs_sklearn_fastest": float(np.exp(np.mean(np.log(vk)))) if vk else None,
            "cells_at_least_spams": sum(v >= 1 for v in vs),
            "cells_10x_sklearn": sum(v >= 10 for v in vk),
            "cells_reached": sum(r["reached"] for r in sub),
            "certificates_valid": all(r.get("certificate_valid", False) for r in sub if r["cpu_s"] is not None),
        }
    return out


def figure(rows: list[dict], path: str) -> None:
    """Speed-up over spams' LARS per cell, both gapbound variants (log scale)."""
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(r["cell"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(cells) + 1.5))
    for k, (name, color) in enumerate((("gapbound SparseCoder (kept)", "C0"), ("gapbound fista (one call)", "C1"))):
        v = [next((r["vs_spams"] for r in rows if r["cell"] == c and r["solver"] == name), None) or np.nan for c in cells]
        ax.barh(np.arange(len(cells)) + 0.4 * k - 0.2, v, height=0.4, color=color, label=name)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(np.arange(len(cells)), cells, fontsize=7)
    ax.set_xlabel("CPU-time speed-up over spams LARS (to the best objective within 1e-6 rel.; >1 = faster)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- ITO part (known D)


def ito_rows(lam: float, budgets: list[int], sae_steps: int, repeats: int, seed: int, mcc_slack: float) -> list[dict]:
    """Warm-started FISTA against the 10,000-step Adam-exp baseline on known D.

    Plain restarted FISTA at each iteration budget (``polish=False``, ``tol=0``: exactly
    that many iterations), and FISTA with the active set (an exact solver), which starts
    from the SAE's codes, run to the float32 certificate floor (``tol=1e-6``; the
    dictionary is float32). Times are process CPU seconds (``wall_s`` keeps its old name).
    """
    from gapbound.models import SAE, Dictionary
    from gapbound.synthetic.data import SyntheticConfig, make_problem
    from gapbound.synthetic.metrics import mcc
    from gapbound.training import Autoencoder, TrainConfig, tensor_batches, train

    p = make_problem(SyntheticConfig(N=16, M=8, K=3, n_train=1024, n_test=1024, seed=seed))
    torch.manual_seed(seed)
    model = Autoencoder(SAE(8, 16), Dictionary(8, 16, weight=p.D, trainable=False))
    train(model, tensor_batches(p.X_train), TrainConfig(steps=sae_steps, lr=1e-3, l1=1e-4, progress=False, seed=seed))
    enc = model.encoder.eval()
    D, X = p.D, p.X_test
    name = "N16_M8_K3_knownD_test1024"
    rows: list[dict] = []

    def run(label: str, reps: int, cold: bool = False, **kw: Any) -> dict:
        def go():
            with torch.no_grad():
                init = None if cold else enc(X)
            return solve(D, X, lam, init=init, **kw)

        wall, res = cpu_time(go, reps)
        flops = count_flops(go)[0]
        row = {"part": "ito", "solver": label, "problem": name, "lam": lam, "wall_s": wall, "flops": flops,
               "objective": float(res.objective.sum()), "duality_gap": float(res.duality_gap.max()),
               "mean_gap": float(res.duality_gap.mean()), "n_iter": res.n_iter, "mcc": mcc(p.S_test, res.codes)}
        rows.append(row)
        print(f"  {label:<30} {wall:9.4f} s  MCC {row['mcc']:.4f}", file=sys.stderr, flush=True)
        return row

    with torch.no_grad():
        sae_mcc = mcc(p.S_test, enc(X))
    base = run("adam_exp 10k (baseline)", 1, method="adam_exp", max_iter=10_000, lr=3e-3)
    for b in budgets:
        run(f"fista warm, {b} it", repeats, method="fista", max_iter=b, tol=0.0, check_every=b, polish=False)
    # With the polish, FISTA starts with the active set from the SAE's codes (on CPU, compiled).
    run("fista warm + active set", repeats, method="fista", max_iter=10_000, tol=1e-6)
    run("fista cold + active set", repeats, method="fista", max_iter=10_000, tol=1e-6, cold=True)
    hit = min((r for r in rows[1:] if r["mcc"] >= base["mcc"] - mcc_slack), key=lambda r: r["wall_s"], default=None)
    for r in rows:
        r["sae_mcc"] = sae_mcc
        r["baseline_mcc"] = base["mcc"]
        r["mcc_slack"] = mcc_slack
        r["flops_fraction_of_baseline"] = r["flops"] / base["flops"]
        r["wall_fraction_of_baseline"] = r["wall_s"] / base["wall_s"]
        r["matches_baseline_mcc"] = r["mcc"] >= base["mcc"] - mcc_slack
        r["fastest_matching_baseline"] = r is hit
    return rows


# --------------------------------------------------------------------------- warm starts


def warm_starts(S: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Starts from good to useless, built from the optimum ``S`` of a cell."""
    big = float(S.max())
    return {
        "optimum": S,
        "optimum, values x (1 + 0.1 noise)": S * (1 + 0.1 * rng.normal(size=S.shape)).clip(0),
        "optimum + 5% junk atoms": S + (rng.random(S.shape) < 0.05) * 0.1 * big,
        "random, 10% of atoms": np.abs(rng.normal(size=S.shape)) * (rng.random(S.shape) < 0.1) * big,
        "random, every atom": np.abs(rng.normal(size=S.shape)) * big,
    }


def warm_rows(seed: int, repeats: int, cells: list[str] | None) -> list[dict]:
    """SparseCoder from each start against a cold start, CPU time side by side (interleaved; minimum and median of ``repeats``)."""
    specs = [Cell("gaussian", 256, 64, 1e-2, 32), Cell("coherent", 256, 64, 1e-2, 32), Cell("noisy", 256, 64, 1e-3, 32),
             Cell("gaussian", 1024, 256, 1e-2, 32), Cell("gaussian", 1024, 256, 1e-3, 32)]
    rows = []
    for cell in (c for c in specs if not cells or any(s in c.name for s in cells)):
        D, X, lam, _ = make_cell(cell, seed)
        coder = SparseCoder(D, lam, tol=1e-8 * float(0.5 * (X * X).sum(1).mean()))
        coder.atoms.G64  # noqa: B018
        cold = coder.solve(X)
        for name, S0 in warm_starts(cold.codes.numpy(), np.random.default_rng(seed)).items():
            t_cold, t_warm = [], []
            for _ in range(repeats):  # interleaved: both see the same machine load
                t_cold.append(cpu_time(lambda: coder.solve(X), 1)[0])
                tw, res = cpu_time(lambda: coder.solve(X, init=S0), 1)
                t_warm.append(tw)
            excess = float(res.objective.sum() - cold.objective.sum()) / float(cold.objective.sum())
            ratio, med = min(t_warm) / min(t_cold), float(np.median(t_warm) / np.median(t_cold))
            rows.append({"part": "warm", "cell": cell.name, "start": name, "cold_cpu_s": min(t_cold), "warm_cpu_s": min(t_warm),
                         "warm_over_cold": ratio, "cold_cpu_s_median": float(np.median(t_cold)),
                         "warm_cpu_s_median": float(np.median(t_warm)), "warm_over_cold_median": med, "repeats": repeats,
                         "converged": bool(res.converged), "rel_excess_over_cold": excess, "load_1min": os.getloadavg()[0]})
            print(f"  {cell.name:<32} {name:<34} warm/cold {ratio:5.2f} (medians {med:5.2f})", file=sys.stderr, flush=True)
    return rows


def pair_rows(seed: int, repeats: int, cells: list[Cell]) -> list[dict]:
    """``SparseCoder`` (kept) against spams' LARS with their calls alternating in one loop, so both see the same load.

    The grid times each solver's repeats back to back; on sub-0.1 ms cells a change in the
    machine's load between them moves the ratio by tens of percent. Minimum CPU time of each.
    """
    peers = peer_solvers(1, 0.0)
    if "spams LARS" not in peers:
        return []
    rows = []
    for cell in cells:
        D, X, lam, _ = make_cell(cell, seed)
        kept = gapbound_solvers(D, X, lam)["gapbound SparseCoder (kept)"]
        spams_fn = peers["spams LARS"][0]
        runs = {"gapbound SparseCoder (kept)": lambda: kept[0](D, X, lam, kept[1][0]), "spams LARS": lambda: spams_fn(D, X, lam, None)}
        best = {name: float("inf") for name in runs}
        for _ in range(repeats):
            for name, fn in runs.items():
                best[name] = min(best[name], cpu_time(fn, 1)[0])
        objs = {name: objective(D, X, fn(), lam) for name, fn in runs.items()}
        rows.append({"part": "pair", "cell": cell.name, "kept_cpu_s": best["gapbound SparseCoder (kept)"],
                     "spams_cpu_s": best["spams LARS"], "kept_vs_spams": best["spams LARS"] / best["gapbound SparseCoder (kept)"],
                     "kept_rel_excess_over_spams": (objs["gapbound SparseCoder (kept)"] - objs["spams LARS"]) / abs(objs["spams LARS"]),
                     "repeats": repeats, "load_1min": os.getloadavg()[0]})
        r = rows[-1]
        print(f"  {cell.name:<32} kept {r['kept_cpu_s'] * 1e3:.4f} ms  spams {r['spams_cpu_s'] * 1e3:.4f} ms  "
              f"kept/spams {r['kept_vs_spams']:.2f}x", file=sys.stderr, flush=True)
    return rows


def screen_rows(seed: int, cells: list[str] | None, samples: int = 8) -> list[dict]:
    """Upper bound on the correlation work gap-safe screening could save the compiled active set.

    For each of ``samples`` samples per cell the kernel is stopped after 1, 2, ... rounds (it is
    deterministic, so round ``t`` of a longer run is the run with ``max_outer = t``); the atoms
    :func:`gapbound.inference.screening.gap_safe_screen` discards at round ``t``'s codes could
    be left out of round ``t + 1``'s correlation update (``k_{t+1} N`` multiply-adds, the part
    of a round that grows with ``N``). The bound counts no overhead (the test itself, masked
    updates) and lets the last round skip them too, although a certificate over every atom
    needs their correlations.
    """
    specs = [Cell("gaussian", 4096, 1024, 1e-2, 1), Cell("gaussian", 1024, 256, 1e-2, 1)]
    specs += [Cell("gaussian", 4096, 1024, f, 32) for f in (1e-3, 1e-2, 5e-2)]
    rows = []
    for cell in (c for c in specs if not cells or any(s in c.name for s in cells)):
        D, X, lam, _ = make_cell(cell, seed)
        coder = SparseCoder(D, lam, tol=1e-8 * float(0.5 * (X * X).sum(1).mean()))
        coder.solve(X[:1])  # the lean path's kept set-up
        G, have, DT, D64, cap, max_add, n_first = coder._lean
        idx0, vals0 = np.zeros((1, 0), np.int64), np.zeros((1, 0))  # a cold start: no positions
        work = skip = 0.0
        rounds = []
        for i in range(min(samples, cell.n)):
            Xi = X[i : i + 1]
            args = (G, have, DT, Xi @ D64, (Xi * Xi).sum(1), np.arange(1), idx0, vals0, coder.lam, coder.tol, cap, max_add)
            prev, t = 0.0, 1
            while True:
                S, _, gap, _ = run_numpy(*args, t, 4, n_first)
                k = int((S > 0).sum())
                work, skip = work + k * cell.N, skip + k * cell.N * prev
                prev = float(gap_safe_screen(D, Xi, S, lam).double().mean())
                if gap[0] <= coder.tol or t >= 256:
                    break
                t += 1
            rounds.append(t)
        rows.append({"part": "screen", "cell": cell.name, "samples": min(samples, cell.n), "rounds_mean": float(np.mean(rounds)),
                     "screenable_correlation_work": skip / work})
        print(f"  {cell.name:<32} rounds {np.mean(rounds):.1f}  correlation work screening could skip <= {skip / work:.1%}",
              file=sys.stderr, flush=True)
    return rows


def warm_table(rows: list[dict]) -> str:
    """Markdown table: warm / cold CPU-time ratio per cell and start, of the minima (of the medians in brackets)."""
    starts = list(dict.fromkeys(r["start"] for r in rows))
    out = ["| cell | cold s | " + " | ".join(starts) + " |", "|---" * (len(starts) + 2) + "|"]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        sub = {r["start"]: r for r in rows if r["cell"] == cell}
        cold = min(r["cold_cpu_s"] for r in sub.values())
        out.append(f"| {cell} | {cold:.4f} | " + " | ".join(f"{sub[s]['warm_over_cold']:.2f}x ({sub[s]['warm_over_cold_median']:.2f}x)" for s in starts)
                   + " |")
    return "\n".join(out)


def ito_table(rows: list[dict]) -> str:
    """Plain-text table of the ITO rows."""
    out = [f"ITO on known D (SAE test MCC {rows[0]['sae_mcc']:.4f})",
           f"{'solver':<34} {'cpu_s':>9} {'MFLOP':>10} {'MCC':>7} {'flops/base':>10} {'cpu/base':>10} matches"]
    for r in rows:
        mark = "  <- fastest matching" if r["fastest_matching_baseline"] else ""
        out.append(f"{r['solver']:<34} {r['wall_s']:9.4f} {r['flops'] / 1e6:10.2f} {r['mcc']:7.4f} "
                   f"{r['flops_fraction_of_baseline']:10.4f} {r['wall_fraction_of_baseline']:10.4f} {r['matches_baseline_mcc']}{mark}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", metavar="FILE", help="write {rows, summary, command} as JSON to FILE")
    ap.add_argument("--figure", metavar="FILE", help="write the speed-up figure to FILE (png/pdf)")
    ap.add_argument("--parts", nargs="+", choices=("grid", "ito", "warm", "pair", "screen"), default=["grid"])
    ap.add_argument("--cells", nargs="+", metavar="SUBSTRING", help="only cells whose name contains one of these")
    ap.add_argument("--rtol", type=float, default=1e-6, help="relative objective excess over the best that counts as reached")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="skip a solver whose estimated CPU time on a cell exceeds this")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats of runs under 0.5 s (minimum is reported)")
    ap.add_argument("--resume", action="store_true", help="keep the cells already in --json and run only the others")
    ap.add_argument("--ito-lam", type=float, default=1e-3, help="L1 weight of the ITO part (gapbound.synthetic.methods' default)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[5, 20, 80, 320], help="iteration budgets of plain warm-started FISTA (ITO part)")
    ap.add_argument("--mcc-slack", type=float, default=1e-3, help="ITO matches the baseline when its test MCC is at least the baseline's minus this")
    ap.add_argument("--sae-steps", type=int, default=5000, help="training steps of the SAE that warm-starts ITO")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.rtol <= 0 or args.repeats < 1 or args.max_seconds <= 0 or args.ito_lam < 0:
        ap.error("--rtol and --max-seconds must be > 0, --repeats >= 1, --ito-lam >= 0")
    # One thread for every solver: torch, BLAS (threadpoolctl), numba (follows torch), spams (numThreads=1).
    torch.set_num_threads(1)
    rows: list[dict] = []
    t0 = time.time()
    with threadpool_limits(1):
        if "grid" in args.parts:
            cells = [c for c in default_cells() if not args.cells or any(s in c.name for s in args.cells)]
            if not cells:
                ap.error(f"--cells matches none of: {[c.name for c in default_cells()]}")
            if args.resume and args.json and os.path.exists(args.json):
                with open(args.json) as f:
                    rows = [r for r in json.load(f)["rows"] if r.get("part") == "grid"]
                done = {r["cell"] for r in rows}
                cells = [c for c in cells if c.name not in done]
            warm_up(args.seed)
            for c in cells:
                print(f"[grid] {c.name}", file=sys.stderr, flush=True)
                rows += [{"part": "grid", **r} for r in run_cell(c, args.seed, args.rtol, args.repeats, args.max_seconds)]
                if args.json:  # finished cells are never lost
                    write_json(args.json, args, argv, rows, t0, summary(rows))
        if "pair" in args.parts:
            print("[pair] SparseCoder (kept) vs spams LARS, calls alternating", file=sys.stderr, flush=True)
            warm_up(args.seed)
            rows += pair_rows(args.seed, args.repeats, [c for c in default_cells() if not args.cells or any(s in c.name for s in args.cells)])
        if "warm" in args.parts:
            print("[warm] starts vs cold", file=sys.stderr, flush=True)
            rows += warm_rows(args.seed, max(args.repeats, 10), args.cells)
        if "screen" in args.parts:
            print("[screen] gap-safe screening: an upper bound on what it saves", file=sys.stderr, flush=True)
            rows += screen_rows(args.seed, args.cells)
        if "ito" in args.parts:
            print("[ito] known D", file=sys.stderr, flush=True)
            rows += ito_rows(args.ito_lam, sorted(args.budgets), args.sae_steps, args.repeats, args.seed, args.mcc_slack)
    grid = [r for r in rows if r["part"] == "grid"]
    summ = summary(grid) if grid else {}
    if grid:
        print(grid_table(grid))
        for name, s in summ.items():
            print(f"{name}: {s}")
    if any(r["part"] == "warm" for r in rows):
        print(warm_table([r for r in rows if r["part"] == "warm"]))
    if any(r["part"] == "ito" for r in rows):
        print(ito_table([r for r in rows if r["part"] == "ito"]))
    if args.figure and grid:
        figure(grid, args.figure)
    if args.json:
        write_json(args.json, args, argv, rows, t0, summ)
    return rows


def write_json(path: str, args: argparse.Namespace, argv: list[str] | None, rows: list[dict], t0: float, summ: dict) -> None:
    """The rows so far, the summary, the command and the machine's load (atomic write)."""
    import platform

    atomic_write_json(path, {"command": "python benchmarks/solvers.py " + " ".join(sys.argv[1:] if argv is None else argv),
                             "elapsed_s": time.time() - t0, "load_average": list(os.getloadavg()),
                             "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                             "torch": torch.__version__, "summary": summ, "rows": rows})


if __name__ == "__main__":
    main()
