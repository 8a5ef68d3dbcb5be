"""``python -m gapbound.meter SAE_DIR ACTIVATIONS``: a trained SAE's amortisation gap, certified.

``SAE_DIR`` is a SAELens directory (``cfg.json`` + ``sae_weights.safetensors``) or a
dictionary_learning one (``ae.pt`` + ``config.json``). ``ACTIVATIONS`` is a ``.npy``
array ``(n, d_in)`` or ``(n, ctx, d_in)``, or a gapbound shard store directory
(``python -m gapbound.lm.harvest`` output), read without copying more than needed.
Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..models import load_sae
from ..utils.cli import add_debug_arg, positive_float, positive_int, run_cli
from ..utils.io import atomic_write
from .core import measure_gap

__all__ = ["main", "read_activations"]


def read_activations(path: str | Path, max_samples: int | None = None) -> np.ndarray:
    """Activation vectors ``(n, d)`` from a ``.npy`` file (2-D or 3-D) or a shard store directory.

    Only the first ``max_samples`` vectors are read (shards are memory-mapped).
    """
    path = Path(path)
    if path.is_dir():
        from ..lm.shards import ShardStore

        store = ShardStore.open(path)
        lo, hi = store.positions  # the token positions training uses (e.g. skipping BOS)
        parts, have = [], 0
        for index in range(store.n_shards):
            acts, _ = store.load_shard(index)
            flat = acts[:, lo:hi].reshape(-1, acts.shape[-1])
            take = flat if max_samples is None else flat[: max_samples - have]
            parts.append(np.asarray(take, dtype=np.float32))
            have += take.shape[0]
            if max_samples is not None and have >= max_samples:
                break
        if not parts:
            raise ValueError(f"shard store {path} holds no shards yet")
        return np.concatenate(parts)
    if not path.is_file():
        raise FileNotFoundError(f"activations {path} do not exist (a .npy file or a shard store directory)")
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"activations {path} are not a readable .npy array ({str(err).splitlines()[0]}); "
                         "save them with numpy.save") from None
    if not isinstance(X, np.ndarray):  # an .npz archive
        X.close()
        raise ValueError(f"activations {path} are an .npz archive; save the one array with numpy.save (.npy)")
    if X.ndim == 3:
        X = X.reshape(-1, X.shape[-1])
    if X.ndim != 2:
        raise ValueError(f"activations {path} must have shape (n, d_in) or (n, ctx, d_in), got {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise TypeError(f"activations {path} must be real floating point, got dtype {X.dtype}"
                        + ("; pass the real part explicitly" if np.issubdtype(X.dtype, np.complexfloating) else ""))
    if X.shape[0] == 0:
        raise ValueError(f"activations {path} hold no samples (shape {X.shape})")
    return np.array(X if max_samples is None else X[:max_samples], dtype=np.float32)  # a writable copy


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gapbound.meter", description=__doc__.split("\n\n")[0])
    ap.add_argument("sae", help="SAE directory: SAELens (cfg.json + sae_weights.safetensors) or dictionary_learning (ae.pt + config.json)")
    ap.add_argument("activations", help=".npy of shape (n, d_in) or (n, ctx, d_in), or a shard store directory")
    ap.add_argument("--lam", type=positive_float, default=None, help="LASSO L1 weight (default: implied by the SAE's codes)")
    ap.add_argument("--rtol", type=positive_float, default=1e-6, help="certificate tolerance relative to the median SAE objective")
    ap.add_argument("--max-iter", type=positive_int, default=5000, help="cap on the working-set rounds of each problem")
    ap.add_argument("--max-samples", type=positive_int, default=None, help="use only the first n activation vectors")
    ap.add_argument("--no-matched-l1", action="store_true", help="skip the matched-L1 reconstruction problem (much faster on large SAEs whose matched-L1 optima are wide)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ap.add_argument("--out", metavar="FILE", help="also write per-sample arrays and the summary to FILE (.npz, written atomically; the folder must exist)")
    add_debug_arg(ap)
    return ap


def check_out(out: str | None) -> None:
    """Refuse an ``--out`` that cannot be written, before any work."""
    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file to write, e.g. --out {path / 'gap.npz'}")
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: its folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"--out {path}: its folder {path.parent} is not writable")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, measure and return the summary (printing nothing)."""
    check_out(args.out)
    sae = load_sae(args.sae)
    X = read_activations(args.activations, args.max_samples)
    if X.shape[1] != sae.M:
        raise ValueError(f"activations have d={X.shape[1]} but the SAE reads d_in={sae.M}")
    report = measure_gap(sae, X=X, lam=args.lam, rtol=args.rtol, max_iter=args.max_iter,
                         matched_l1=not args.no_matched_l1)
    summary = {"sae": str(args.sae), "architecture": sae.activation, "activations": str(args.activations), **report.summary()}
    if args.out:
        arrays = {k: v for k, v in vars(report).items() if isinstance(v, np.ndarray)}  # skipped ones are None
        out = Path(args.out)
        if out.suffix != ".npz":  # numpy.savez would append it, so the file would not be where asked
            out = out.with_name(out.name + ".npz")

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, summary=json.dumps(summary))

        atomic_write(out, write)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0, or 2 after a one-line error)."""

    def go(argv: Sequence[str] | None) -> int:
        args = _parser().parse_args(argv)
        summary = run(args)
        if args.json:
            print(json.dumps(summary))
        else:
            width = max(map(len, summary))
            for k, v in summary.items():
                if v is not None:
                    print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
        return 0

    return run_cli(go, argv, resume_hint=None)


if __name__ == "__main__":
    sys.exit(main())
