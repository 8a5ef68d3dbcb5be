"""MLP k = 8 dead latents: short variants of the offline preset's MLP training (see README.md here).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 python results/lm_offline3/diagnostics/diag_mlp_k8.py VARIANT...

Each variant trains the offline preset's MLP at k = 8 (1000 steps of 512, tied init,
TopK + AuxK) with one change and reports, every 250 steps, the held-out dead fraction
(latents never active on the 64,512 held-out content tokens: the offline run's metric),
the share of latents AuxK counts dead, and held-out NMSE. ``base`` re-reads the offline
run's trained MLP-k8 checkpoint instead of training.
"""
import json, sys, time
from dataclasses import replace

import torch

from gapbound.lm.shards import ActivationStream, ShardStore
from gapbound.lm.training import Normaliser, _content, build_model, sparse_codes
from gapbound.training import TrainConfig, train
from gapbound.training.resample import resample_dead
from simulations.gpt2 import PRESETS, split_shards

torch.set_num_threads(1)
K = 8
VARIANTS = {  # name -> (LMConfig changes, resample_every, encoder-row scale multiplier after resampling)
    "aux1/4": ({"aux_coef": 0.25}, 0, 1.0),
    "dead20": ({"dead_steps": 20}, 0, 1.0),
    "resample100": ({}, 100, 1.0),
    "resample100x5": ({}, 100, 5.0),
    "resample250": ({}, 250, 1.0),
    "aux1/4+dead20": ({"aux_coef": 0.25, "dead_steps": 20}, 0, 1.0),
}
store = ShardStore.open("results/lm_offline_store")
splits = split_shards(store.n_shards, 0.07)
base_cfg = PRESETS["offline"].train
stream = ActivationStream(store, base_cfg.batch_size, list(splits["train"]), seed=0)
norm = Normaliser.fit(stream)
_, X_test = _content(store, splits["test"], base_cfg.window)
X_test = norm(X_test)


def heldout(model) -> dict:
    codes = sparse_codes(model, X_test, 4096)
    fires = (codes > 0).sum(0).A1
    recon = torch.from_numpy(codes @ model.dictionary.weight.detach().T.numpy()).float()
    return {"dead_heldout": float((fires == 0).mean()), "auxk_dead": float((model.since_fired > model.dead_steps).float().mean()),
            "nmse": float(((recon - X_test) ** 2).sum() / (X_test ** 2).sum())}


for name in sys.argv[1:]:
    t0 = time.process_time()
    if name == "base":
        model = build_model("MLP", store.d_model, K, base_cfg)
        model.load_state_dict(torch.load("results/lm_offline2_work/k8/checkpoints/MLP-k8.pt", weights_only=False)["model"])
        print(name, 1000, json.dumps(heldout(model.eval())), flush=True)
        continue
    changes, every, mult = VARIANTS[name]
    cfg = replace(base_cfg, **changes)
    model = build_model("MLP", store.d_model, K, cfg)
    if every:  # Bricken et al. resampling towards high-loss inputs (TopKAutoencoder itself relies on AuxK only)

        @torch.no_grad()
        def resample(self, dead, batch, gen, mult=mult):
            x = batch[0]
            per_sample = ((self.dictionary(self.encode(x)) - x) ** 2).sum(1)
            touched = resample_dead(dead, x, per_sample, gen, encoder=self.encoder, dictionary=self.dictionary)
            self.encoder.linear.weight[dead] *= mult
            self.since_fired[dead] = 0
            return touched
        model.resample = resample.__get__(model)
    res = train(model, lambda i: (norm(stream.batch(i).float()), None, None),
                TrainConfig(steps=cfg.steps, lr=cfg.lr, l1=0.0, resample_every=every, seed=0, eval_every=250, progress=False),
                evaluate=heldout)
    for h in res.history:
        print(name, h["step"], json.dumps({k: round(v, 4) for k, v in h.items() if k not in ("step", "train_flops")}), flush=True)
    print(name, "cpu_s", round(time.process_time() - t0), "resampled", res.resampled, flush=True)
