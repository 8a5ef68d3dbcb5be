import sys, time, torch, json
from dataclasses import replace
from gapbound.lm.shards import ShardStore, ActivationStream
from gapbound.lm.training import LMConfig, build_model, Normaliser
from gapbound.training import TrainConfig, train
torch.set_num_threads(1)
name = sys.argv[1]; opts = json.loads(sys.argv[2]); steps = int(sys.argv[3])
store = ShardStore.open("/work/main/results/lm_offline_store")
cfg = LMConfig(expansion=4, mlp_hidden_mult=2, steps=steps, batch_size=512, lr=1e-3, aux_k=256, dead_steps=100)
cfg = replace(cfg, **{k: v for k, v in opts.items() if k in ("aux_coef", "dead_steps", "aux_k", "mlp_hidden_mult")})
lr = opts.get("lr", 1e-3)
stream = ActivationStream(store, 512, list(range(14)), seed=0)
norm = Normaliser.fit(stream)
cfg = replace(cfg, mlp_init=opts.get("init", "default")); model = build_model("MLP", store.d_model, 32, cfg)
if opts.get("centre"):
    with torch.no_grad():
        x = norm(stream.batch(0).float()); z = model.encoder.preactivation(x); model.encoder.linear.bias.sub_(z.mean(0))
xe = norm(stream.batch(20_000).float())
def ev(m):
    c = m.encode(xe); h = m.encoder.features(xe)
    return {"dead_train": float((m.since_fired > cfg.dead_steps).float().mean()), "fires": float((c > 0).any(0).float().mean()),
            "hidden_alive": float((h > 0).any(0).float().mean()),
            "nmse": float(((m.dictionary(c) - xe) ** 2).sum() / (xe ** 2).sum())}
t = time.time()
res = train(model, lambda i: (norm(stream.batch(i).float()), None, None), TrainConfig(steps=steps, lr=lr, l1=0, resample_every=opts.get("resample", 0), eval_every=50, progress=False), evaluate=ev)
for h in res.history: print(name, h["step"], {k: round(v, 3) for k, v in h.items() if k not in ("step", "train_flops")}, flush=True)
print(name, "time", round(time.time() - t), "resampled", res.resampled, flush=True)
