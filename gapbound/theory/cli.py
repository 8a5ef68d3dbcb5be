"""Command line: certify the amortisation gap of one dictionary.

    python -m gapbound.certify --N 16 --M 8 --K 3 --seed 0
    python -m gapbound.certify --dictionary D.npy --K 3 --json
    python -m gapbound.certify --N 16 --M 8 --K 3 --encoder-class relu
    python -m gapbound.certify --N 16 --M 8 --K 3 --encoder-class jumprelu

Prints a readable report, or with ``--json`` one JSON object with
``lower_bound``, ``optimal``, ``truncated_rows``, ``witness_codes``, ``exact_decoder_error``,
``hypotheses_hold``, ``reason``, ``encoder_class`` and per-row details.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..synthetic.data import random_dictionary
from ..utils.cli import add_debug_arg, run_cli
from .certificate import CertifyResult, certify, default_max_partners
from .witness import check_witness_memory


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gapbound.certify",
        description="Certified lower bound on the witness-set error of every linear-gated SAE encoder, "
        "with per-sample exact decoding of the same witness codes.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dictionary", metavar="FILE.npy", help="M x N dictionary (numpy .npy)")
    src.add_argument("--N", type=int, default=None, help="sources (random Gaussian unit-norm dictionary)")
    p.add_argument("--M", type=int, default=8, help="measurements for the random dictionary (default 8)")
    p.add_argument("--K", type=int, required=True, help="sparsity K (>= 2 for a gap)")
    p.add_argument("--seed", type=int, default=0, help="dictionary seed (default 0)")
    p.add_argument("--design", choices=["pairs", "exact"], default="pairs", help="witness set design (default pairs)")
    p.add_argument("--encoder-class", choices=["linear-gated", "jumprelu", "relu", "topk"], default="linear-gated",
                   help="encoders the bound covers (default linear-gated: ReLU, JumpReLU, TopK; "
                   "jumprelu: JumpReLU with any thresholds, a tighter bound for that class; relu; "
                   "topk: TopK(k) with or without ReLU for every k >= K)")
    p.add_argument("--jumprelu-budget", type=int, default=None,
                   help="ignored (kept for old scripts): the jumprelu bound is a branch and bound of its own")
    p.add_argument("--max-partners", type=int, default=None, help="partners per source in the witness set")
    p.add_argument("--l1-certificates", action="store_true", help="also certify L1 uniqueness per code (one LP each)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    return p


def report(res: CertifyResult, seconds: float) -> str:
    """Human-readable summary of a :class:`CertifyResult`."""
    lines = [
        f"dictionary: M={res.M}, N={res.N}, rank {res.rank}; K={res.K}; witness design '{res.design}' "
        f"({len(res.witness_codes)} codes)",
        f"encoder class: {res.encoder_class}",
        f"hypotheses hold: {res.hypotheses_hold}",
        f"  {res.reason}",
        f"certified lower bound on the witness-set error of every such encoder: {res.lower_bound:.6g}",
        f"optimal (the bound is the class optimum on the witness set): {res.optimal}"
        + ("" if res.optimal or not res.rows else f"; {len(res.truncated_rows)} rows below it:"),
    ]
    lines += [f"  row {row}: {why}" for row, why in res.truncated_rows]
    lines += [
        f"per-sample exact decoder error on the same codes: {res.exact_decoder_error:.3g} "
        f"(non-negative basis pursuit: {res.basis_pursuit_error:.3g})",
    ]
    if res.rows:
        relu = res.encoder_class_key == "relu"  # branch and bound: nodes, not drop sets
        lines.append("per row: bound (active/inactive codes, " + ("branch-and-bound nodes)" if relu else
                                                                 "drops enumerated, subproblems)"))
        for r in res.rows:
            work = f"{r.n_subproblems} nodes" if relu else f"<= {r.max_drops_enumerated} drops, {r.n_subproblems} subproblems"
            lines.append(f"  row {r.row:3d}: {r.bound:9.4f}  ({r.n_active}/{r.n_inactive}, {work})"
                         + ("" if r.truncated is None else "  [below the class optimum]"))
    lines.append(f"time: {seconds:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors (exit 2), Ctrl-C without a traceback, tracebacks only with ``--debug``."""
    return run_cli(_run, argv, resume_hint=None)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.dictionary is not None:
        try:
            D = np.load(args.dictionary, allow_pickle=False)
        except (ValueError, EOFError) as err:  # not a .npy (e.g. an .npz archive or garbage)
            raise ValueError(f"--dictionary {args.dictionary} is not a .npy array ({err})") from None
    else:
        if args.N is None:
            raise ValueError("give --N (random dictionary) or --dictionary FILE.npy")
        # sizes are checked against available memory before the dictionary or witness set exists
        check_witness_memory(args.N, args.M, args.K, args.design,
                             default_max_partners(args.N, args.M, args.max_partners), argument="--N")
        D = random_dictionary(args.M, args.N, args.seed)
    t0 = time.perf_counter()
    res = certify(D, args.K, design=args.design, encoder_class=args.encoder_class,
                  max_partners=args.max_partners, check_uniqueness=args.l1_certificates)
    seconds = time.perf_counter() - t0
    if args.json:
        out = res.to_dict()
        out["seconds"] = seconds
        print(json.dumps(out))
    else:
        print(report(res, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
