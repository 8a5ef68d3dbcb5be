import sys, time, torch
from dataclasses import replace
from gapbound.lm.shards import ShardStore, ActivationStream
from gapbound.lm.training import LMConfig, build_model, Normaliser
from gapbound.training import TrainConfig, train
torch.set_num_threads(1)
variant = sys.argv[1]; steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
store = ShardStore.open("/work/main/results/lm_offline_store")
cfg = LMConfig(expansion=4, mlp_hidden_mult=2, steps=steps, batch_size=512, lr=1e-3, aux_k=256, dead_steps=100)
if variant.startswith("aux"):
    cfg = replace(cfg, aux_coef=float(variant[3:]))
stream = ActivationStream(store, 512, list(range(14)), seed=0)
norm = Normaliser.fit(stream)
model = build_model("MLP", store.d_model, 32, cfg)
if "centre" in variant:
    with torch.no_grad():
        x = norm(stream.batch(0).float())
        z = model.encoder.preactivation(x)
        lin = model.encoder.linear
        if "std" in variant:
            s = z.std(0); lin.weight.mul_((s.mean() / s).unsqueeze(1)); z = model.encoder.preactivation(x)
        lin.bias.sub_(z.mean(0))
fired_window = torch.zeros(model.dictionary.N, dtype=torch.bool)
def ev(m):
    x = norm(stream.batch(10_000).float())
    return {"dead_train": float((m.since_fired > 100).float().mean()), "fires_any_batch": float((m.encode(x) > 0).any(0).float().mean()), "frac_fire_gt_1e-3": float(((m.encode(x) > 0).float().mean(0) > 1e-3).float().mean())}
t = time.time()
res = train(model, lambda i: (norm(stream.batch(i).float()), None, None), TrainConfig(steps=steps, lr=1e-3, l1=0, resample_every=0, eval_every=50, progress=False), evaluate=ev)
for h in res.history: print(variant, h["step"], round(h["dead_train"], 3), round(h["fires_any_batch"], 3), round(h["frac_fire_gt_1e-3"], 3), flush=True)
# held-out NMSE on a batch
x = norm(stream.batch(20_000).float())
with torch.no_grad(): r = model.dictionary(model.encode(x))
print(variant, "nmse", float(((r - x)**2).sum() / (x**2).sum()), "time", time.time() - t, flush=True)
