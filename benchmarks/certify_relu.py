"""ReLU-class certify at the sizes of issue 13, one thread: wall time and whether the bound is the class optimum.

    OMP_NUM_THREADS=1 python benchmarks/certify_relu.py --out results/certify_relu

Cases (``--cases``, ``N:M:K:design``): N=20, M=10, K=4 with exactly-K witness codes and
N=32, M=16, K=3 with the pairs design (all pairs), seed 0 unless ``--seeds``. Each case is
timed ``--repeats`` times (the minimum is reported, with the process CPU time, a fairer figure on a
shared machine, and the load average); the bound
itself (``lower_bound``) is timed separately from the whole ``certify`` (which adds exact
decoding of the witness codes). ``--certify-only`` times only ``certify`` (bound included: half the run
time, for the quiet-window measurement of the 60 s target). Writes ``OUT/relu_sizes.json`` after every
case (atomic).

    OMP_NUM_THREADS=1 python benchmarks/certify_relu.py --out results/certify_relu_quiet --certify-only
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported: one core, as the target says

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gapbound.synthetic.data import random_dictionary  # noqa: E402
from gapbound.theory import certify, lower_bound, witness_codes  # noqa: E402
from gapbound.theory.certificate import default_max_partners  # noqa: E402


def run_certify(N: int, M: int, K: int, design: str, seed: int, repeats: int) -> dict:
    """``certify`` alone (the bound included), wall and process CPU time of each repeat."""
    D = random_dictionary(M, N, seed).numpy().astype(np.float64)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        cert = certify(D, K, design=design, encoder_class="relu")
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "N": N, "M": M, "K": K, "design": design, "seed": seed, "n_codes": len(cert.witness_codes),
        "certify_lower_bound": cert.lower_bound, "certify_optimal": cert.optimal,
        "n_truncated_rows": len(cert.truncated_rows), "hypotheses_hold": cert.hypotheses_hold,
        "seconds_certify_min": min(wall), "cpu_seconds_certify_min": min(cpu), "seconds_certify_all": wall,
        "load_average_1min": os.getloadavg()[0], "threads": os.environ["OMP_NUM_THREADS"],
    }


def run_case(N: int, M: int, K: int, design: str, seed: int, repeats: int) -> dict:
    D = random_dictionary(M, N, seed).numpy().astype(np.float64)
    codes = witness_codes(N, K, design, default_max_partners(N, M, None))
    t_bound, t_cert, cpu_bound = [], [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = lower_bound(D, codes, "relu")
        t_bound.append(time.perf_counter() - t0)
        cpu_bound.append(time.process_time() - c0)
        t0 = time.perf_counter()
        cert = certify(D, K, design=design, encoder_class="relu")
        t_cert.append(time.perf_counter() - t0)
    uppers = sum(r.upper for r in res.rows)
    return {
        "N": N, "M": M, "K": K, "design": design, "seed": seed, "n_codes": len(codes),
        "bound": res.bound, "best_relu_encoder_error": uppers, "optimal": res.optimal,
        "n_truncated_rows": len(res.truncated_rows), "nodes": int(sum(r.n_subproblems for r in res.rows)),
        "max_nodes_per_row": int(max(r.n_subproblems for r in res.rows)),
        "seconds_bound_min": min(t_bound), "cpu_seconds_bound_min": min(cpu_bound), "seconds_certify_min": min(t_cert),
        "seconds_bound_all": t_bound, "seconds_certify_all": t_cert,
        "certify_optimal": cert.optimal, "certify_lower_bound": cert.lower_bound,
        "hypotheses_hold": cert.hypotheses_hold, "load_average_1min": os.getloadavg()[0],
        "threads": os.environ["OMP_NUM_THREADS"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/certify_relu")
    p.add_argument("--cases", nargs="+", default=["20:10:4:exact", "32:16:3:pairs"], help="N:M:K:design")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--certify-only", action="store_true", help="time certify() alone (no separate lower_bound run)")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in args.cases:
        N, M, K, design = case.split(":")
        for seed in args.seeds:
            run = run_certify if args.certify_only else run_case
            rows.append(run(int(N), int(M), int(K), design, seed, args.repeats))
            print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("_all")}), flush=True)
            tmp = out / "relu_sizes.json.tmp"
            tmp.write_text(json.dumps({"config": vars(args), "rows": rows}, indent=1))
            os.replace(tmp, out / "relu_sizes.json")


if __name__ == "__main__":
    main()
