"""The gap meter at language-model scale: a GPT-2-sized TopK SAE (d_in 768, 24,576 latents).

    OMP_NUM_THREADS=2 python -m benchmarks.meter_scale --n 4096            # the issue-18 target: < 5 min on 2 cores
    OMP_NUM_THREADS=2 python -m benchmarks.meter_scale --n 4096 --lasso-only
    OMP_NUM_THREADS=2 python -m benchmarks.meter_scale --n 256 --d-in 384 --d-sae 1536   # simulations.gpt2's size

No trained GPT-2 SAE ships with the package, so the SAE is a planted one: activations are
K-sparse non-negative combinations of a random unit-norm dictionary plus noise, and the SAE is
the tied TopK encoder of that dictionary (its codes are good but not optimal, like a trained
SAE's). Prints one JSON line: time, certified, gaps, certificates, and the machine's load average
before and after (timings on a shared machine say little without it).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from gapbound.meter import measure_gap
from gapbound.models import SAE


def planted(n: int, d_in: int, d_sae: int, k: int, seed: int = 0) -> tuple[SAE, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(d_in, d_sae, generator=g)
    D /= D.norm(dim=0)
    idx = torch.rand(n, d_sae, generator=g).argsort(1)[:, :k] if d_sae <= 4096 else torch.randint(0, d_sae, (n, k), generator=g)
    S = torch.zeros(n, d_sae).scatter_(1, idx, torch.rand(n, k, generator=g) + 0.5)
    X = S @ D.T + 0.02 * torch.randn(n, d_in, generator=g)
    sae = SAE.from_weights(D.clone(), torch.zeros(d_sae), D.T.contiguous(), torch.zeros(d_in), "topk", k=k,
                           apply_b_dec_to_input=False)
    return sae, X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--d-sae", type=int, default=24576)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lasso-only", action="store_true", help="skip the matched-L1 problem")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sae, X = planted(args.n, args.d_in, args.d_sae, args.k)
    load_before, cpu = os.getloadavg()[0], time.process_time()
    s = measure_gap(sae, X, matched_l1=not args.lasso_only).summary()
    cpu = time.process_time() - cpu  # CPU seconds of all threads: on a busy machine the wall time is not the cost
    print(json.dumps({"n": args.n, "d_in": args.d_in, "d_sae": args.d_sae, "k": args.k, "threads": args.threads,
                      "matched_l1": not args.lasso_only, "load_avg_1min": [load_before, os.getloadavg()[0]],
                      "cpu_seconds": cpu,
                      **{key: s[key] for key in ("seconds", "certified", "gap_rel", "certificate_max", "tol_lasso",
                                                  "l1_certificate_max", "tol_l1", "l0_sae_mean", "l0_opt_mean",
                                                  "sq_err_matched_l1_reduction",
                                                  "not_certified_because")}}))


if __name__ == "__main__":
    main()
