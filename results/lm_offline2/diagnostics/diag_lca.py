import sys, time, torch, numpy as np
from gapbound.lm.shards import ShardStore, ActivationStream
from gapbound.lm.training import Normaliser
from gapbound.inference import solve
torch.set_num_threads(1)
store = ShardStore.open("/work/main/results/lm_offline_store")
stream = ActivationStream(store, 512, list(range(14)), seed=0)
norm = Normaliser.fit(stream)
st = torch.load("/work/main/results/lm_offline/checkpoints/SAE-k32.pt", weights_only=False)["model"]
D = st["dictionary.weight"].float()
print("D", D.shape, "||D||^2", float(torch.linalg.matrix_norm(D, 2))**2)
x = norm(stream.batch(20_000).float())[:256]
def run(method, iters, lam, eta=None):
    kw = {"max_iter": iters, "tol": 0.0}
    if method == "fista": kw["polish"] = False
    if eta is not None: kw["eta"] = eta
    s = solve(D, x, lam, method=method, **kw).codes.float()
    return float(((x - s @ D.T)**2).sum() / (x**2).sum()), float((s > 0).sum(1).float().mean())
def at_l0(method, iters, target=32, eta=None):
    lo, hi = 1e-3, 30.0
    for _ in range(18):
        lam = (lo * hi) ** 0.5
        e, l0 = run(method, iters, lam, eta)
        if l0 > target: lo = lam
        else: hi = lam
    return lam, e, l0
L = float(torch.linalg.matrix_norm(D, 2))**2
for method, iters, eta in [("lca", 20, None), ("lca", 20, 1.9 / L), ("lca", 50, None), ("lca", 100, None), ("lca", 300, None), ("fista", 20, None), ("fista", 300, None)]:
    t = time.time(); lam, e, l0 = at_l0(method, iters, eta=eta)
    print(method, iters, "eta", eta, "lam", round(lam, 3), "nmse", round(e, 3), "l0", round(l0, 1), "t", round(time.time() - t, 1), flush=True)
