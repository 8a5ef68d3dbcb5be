"""Re-measure the LCA parts' amortisation gaps with the current meter (``gapbound.meter``).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 python results/lm_offline3/regap_lca.py PARTS_DIR K... [--write]

For each LCA part ``PARTS_DIR/LCA-k{K}.json`` this rebuilds the trained model from its
checkpoint (``results/lm_offline2_work/lca{K}/checkpoints``), the same normalisation and
the same 256 held-out rows as ``gapbound.lm.training.evaluate``, checks that the model is
the one the part evaluated (the codes' LASSO objective, squared error and L0 on those rows
must equal the stored ones), and measures the gap with the evaluation's settings
(``gap_iters``, ``gap_rtol`` from the part's configuration). Prints old and new summaries;
with ``--write`` the part's ``gap`` is replaced and the earlier one kept as ``gap_first_meter``,
with ``gap_remeasured`` saying when and with which code.
"""
import json, subprocess, sys, time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gapbound.lm.shards import ActivationStream, ShardStore
from gapbound.lm.training import LMConfig, Normaliser, _content, build_model
from gapbound.meter import measure_gap
from gapbound.utils.io import atomic_write_json, read_json
from simulations.gpt2 import split_shards

torch.set_num_threads(1)
parts_dir, ks, write = Path(sys.argv[1]), [int(a) for a in sys.argv[2:] if a != "--write"], "--write" in sys.argv
manifest = read_json(parts_dir.parent / "experiment.json")
cfg = LMConfig(**manifest["config"]["train"])
store = ShardStore.open("results/lm_offline_store")
splits = split_shards(store.n_shards, manifest["config"]["test_fraction"])
norm = Normaliser.fit(ActivationStream(store, cfg.lca_batch_size, list(splits["train"]), seed=cfg.seed))
_, X_test = _content(store, splits["test"], cfg.window)
X_test = norm(X_test)
rows = torch.randperm(X_test.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[:min(cfg.gap_samples, X_test.shape[0])]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
for k in ks:
    path = parts_dir / f"LCA-k{k}.json"
    part = read_json(path)
    old = part["result"]["gap"]
    model = build_model("LCA", store.d_model, k, cfg)
    model.load_state_dict(torch.load(f"results/lm_offline2_work/lca{k}/checkpoints/LCA-k{k}.pt", weights_only=False)["model"])
    model.eval()
    t0, c0 = time.perf_counter(), time.process_time()
    new = measure_gap(model.encode, model.dictionary.weight.detach(), X_test[rows], lam=None, max_iter=cfg.gap_iters,
                      rtol=cfg.gap_rtol).summary()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    same = all(np.isclose(old[key], new[key], rtol=1e-6) for key in ("lam", "lasso_sae_mean", "sq_err_sae_mean", "l0_sae_mean"))
    print(f"LCA-k{k}: same model and rows: {same}; wall {wall:.0f} s, CPU {cpu:.0f} s", flush=True)
    for key in ("lam", "gap_rel", "gap_mean", "gap_upper_mean", "sq_err_matched_l1_reduction", "certified", "not_certified_because"):
        print(f"  {key}: {old[key]} -> {new[key]}", flush=True)
    if not same:
        raise SystemExit(f"LCA-k{k}: the checkpoint does not reproduce the part's codes; not written")
    if write:
        part["result"]["gap_first_meter"] = old
        part["result"]["gap"] = new
        part["result"]["gap_remeasured"] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git": commit,
                                            "by": "results/lm_offline3/regap_lca.py", "wall_seconds": wall, "cpu_seconds": cpu}
        atomic_write_json(path, part)
        print(f"  written to {path}", flush=True)
