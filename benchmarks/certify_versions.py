"""Two versions of the certified bound side by side: process CPU seconds, bound, nodes and ``optimal`` per case.

    git archive <old commit> gapbound | tar -x -C /tmp/gapbound_old
    OMP_NUM_THREADS=1 python benchmarks/certify_versions.py --src /tmp/gapbound_old . --cases 32:16:3:pairs:0

Each case ``N:M:K:design:seed`` (random dictionary of ``gapbound.synthetic.data``, the witness codes
``certify`` uses) is bounded by ``lower_bound`` with the ``gapbound`` package found under each ``--src``
directory, each in its own process (one thread), alternating the versions ``--repeats`` times, so a
shared machine's load falls on both alike. Prints one JSON line per run; the last line compares the
versions (minimum CPU seconds, whether the bounds are equal and their largest relative difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
torch.set_num_threads(1)
import gapbound
from gapbound.synthetic.data import random_dictionary
from gapbound.theory import lower_bound, witness_codes
from gapbound.theory.certificate import default_max_partners
N, M, K, design, seed = sys.argv[3].split(":")
N, M, K, seed = int(N), int(M), int(K), int(seed)
D = random_dictionary(M, N, seed).numpy().astype(np.float64)
codes = witness_codes(N, K, design, default_max_partners(N, M, None))
c0 = time.process_time()
res = lower_bound(D, codes, sys.argv[2])
print(json.dumps(dict(src=os.path.dirname(os.path.dirname(gapbound.__file__)), cpu=time.process_time() - c0,
                      bound=res.bound, rows=[r.bound for r in res.rows], optimal=res.optimal,
                      nodes=int(sum(r.n_subproblems for r in res.rows)), load=os.getloadavg()[0])))
"""


def run(src: str, encoder_class: str, case: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(Path(src).resolve()), encoder_class, case],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", nargs=2, required=True, help="two directories that each contain a gapbound package")
    p.add_argument("--cases", nargs="+", default=["32:16:3:pairs:0", "20:10:4:exact:0"], help="N:M:K:design:seed")
    p.add_argument("--encoder-class", default="relu", choices=["linear-gated", "relu", "jumprelu"])
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    for case in args.cases:
        runs: dict[str, list[dict]] = {s: [] for s in args.src}
        for _ in range(args.repeats):
            for src in args.src:
                r = run(src, args.encoder_class, case)
                runs[src].append(r)
                print(json.dumps(dict(case=case, **{k: v for k, v in r.items() if k != "rows"})), flush=True)
        a, b = (runs[s][0] for s in args.src)
        rel = max(abs(x - y) / max(abs(x), 1e-300) for x, y in zip(a["rows"] + [a["bound"]], b["rows"] + [b["bound"]]))
        print(json.dumps(dict(case=case, cpu_min={s: min(r["cpu"] for r in runs[s]) for s in args.src},
                              bounds_equal=a["bound"] == b["bound"], max_rel_difference=rel,
                              nodes={s: runs[s][0]["nodes"] for s in args.src},
                              optimal={s: runs[s][0]["optimal"] for s in args.src})), flush=True)


if __name__ == "__main__":
    main()
