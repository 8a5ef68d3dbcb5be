import torch, numpy as np, sae_lens
from gapbound.lm.shards import ShardStore, ActivationStream
from gapbound.lm.training import Normaliser, build_model
from simulations.gpt2 import PRESETS
torch.set_num_threads(1)
store = ShardStore.open("results/lm_offline_store")
norm = Normaliser.fit(ActivationStream(store, 512, list(range(15)), seed=0))
model = build_model("SAE", 384, 32, PRESETS["offline"].train)
model.load_state_dict(torch.load("results/lm_offline2_work/sae32/checkpoints/SAE-k32.pt", weights_only=False)["model"])
model.eval()
lo, hi = store.positions
x = torch.from_numpy(store.activations([15])[:16, lo:hi].astype(np.float32).reshape(-1, 384))
theirs = sae_lens.SAE.load_from_disk("results/lm_offline2/saes/SAE-k32")
with torch.no_grad():
    want, got = model.encode(norm(x)), theirs.encode(x)
    same = (got > 0) == (want > 0)
    print("vectors", x.shape[0], "support identical rows", float(same.all(1).float().mean()),
          "max |code diff|", float((got - want).abs().max()), "max code", float(want.max()))
    rec = theirs.decode(got); ref = model.dictionary(want) / norm.scale + norm.mean
    print("max |recon diff| / max |x|", float((rec - ref).abs().max() / x.abs().max()),
          "NMSE (raw, centred)", float(((rec - x) ** 2).sum() / ((x - norm.mean) ** 2).sum()))
    print("hook", theirs.cfg.metadata.hook_name, "model", theirs.cfg.metadata.model_name, "prepend_bos", theirs.cfg.metadata.prepend_bos)
with torch.no_grad():
    W, b = model.encoder.linear.weight.double(), model.encoder.linear.bias.double()
    z64 = ((x.double() - norm.mean.double()) * norm.scale) @ W.T + b
    z_ours = model.encoder.preactivation(norm(x)).double()
    z_th = (x @ theirs.W_enc + theirs.b_enc).double()
    z_th64 = x.double() @ theirs.W_enc.double() + theirs.b_enc.double()
    print("|x| max", float(x.abs().max()), "|mean| max", float(norm.mean.abs().max()), "scale", norm.scale)
    print("ours-z64", float((z_ours - z64).abs().max()), "theirs32-z64", float((z_th - z64).abs().max()), "theirs64-z64", float((z_th64 - z64).abs().max()))
