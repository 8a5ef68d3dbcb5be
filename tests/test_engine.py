"""The batched training engine: each stacked model ends as the one-at-a-time loop leaves it."""

from __future__ import annotations

import copy

import pytest
import torch

from gapbound.models import Dictionary, MLPEncoder, SAE, make_encoder
from gapbound.synthetic.data import SyntheticConfig, make_problem
from gapbound.synthetic.metrics import mcc
from gapbound.training import Autoencoder, Supervised, TrainConfig, tensor_batches, train
from gapbound.training.engine import can_batch, stack_batches, stacked_tensor_batches, train_batched

SEEDS = (0, 1, 2)


def _problems():
    return [make_problem(SyntheticConfig(n_train=256, n_test=256, seed=s)) for s in SEEDS]


def _model(setting: str, kind: str, p, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = make_encoder(kind, 8, 16, hidden=24)
        if setting == "known_z":
            return Supervised(enc)
        d = Dictionary(8, 16, weight=p.D, trainable=False) if setting == "known_d" else Dictionary(8, 16)
        return Autoencoder(enc, d)


@pytest.mark.parametrize("setting,kind", [("known_z", "mlp"), ("known_d", "sae"), ("unknown", "sae"), ("unknown", "mlp")])
def test_batched_equals_one_at_a_time(setting, kind, tmp_path):
    problems = _problems()
    models = [_model(setting, kind, p, s) for p, s in zip(problems, SEEDS)]
    with torch.no_grad():  # dead latents so that resampling (per-seed generators, Adam resets) is exercised
        models[1].encoder.linear.bias[:3] = -50.0
    alone = copy.deepcopy(models)
    cfgs = [TrainConfig(steps=160, lr=3e-3, l1=1e-3, resample_every=60, eval_every=40, progress=False, seed=s) for s in SEEDS]
    ev = [lambda m, p=p: {"mcc": mcc(p.S_test, m.encode(p.X_test))} for p in problems]
    S = setting == "known_z"
    ref = [train(m, tensor_batches(p.X_train, p.S_train if S else None, 64, seed=s), c, evaluate=e)
           for m, p, s, c, e in zip(alone, problems, SEEDS, cfgs, ev)]
    X = torch.stack([p.X_train for p in problems])
    St = torch.stack([p.S_train for p in problems]) if S else None
    got = train_batched(models, stacked_tensor_batches(X, St, 64, SEEDS), cfgs, evaluate=ev)
    assert ref[1].resampled >= 3
    for a, b, ra, rb in zip(alone, models, ref, got):
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, atol=2e-5, rtol=1e-4, msg=name)
        assert (ra.step_flops, ra.resampled) == (rb.step_flops, rb.resampled)
        assert [h["step"] for h in ra.history] == [h["step"] for h in rb.history]
        assert [h["mcc"] for h in rb.history] == pytest.approx([h["mcc"] for h in ra.history], abs=1e-4)
        assert rb.final_loss == pytest.approx(ra.final_loss, rel=1e-4)


@pytest.mark.parametrize("setting", ["known_z", "known_d", "unknown"])
@pytest.mark.parametrize("kind,hidden", [("sae", None), ("mlp", 24), ("mlp", 160)])
def test_stacked_gradients_equal_autograd(setting, kind, hidden):
    """The hand-written batched gradients are each model's autograd gradient of its own loss, for every layer."""
    from gapbound.training.engine import _Stack

    problems = _problems()
    models = []
    for p, s in zip(problems, SEEDS):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            enc = make_encoder(kind, 8, 16, hidden=hidden)
            d = Dictionary(8, 16, weight=p.D, trainable=False) if setting == "known_d" else Dictionary(8, 16)
            models.append(Supervised(enc) if setting == "known_z" else Autoencoder(enc, d))
    X = torch.stack([p.X_train for p in problems])
    S = torch.stack([p.S_train for p in problems]) if setting == "known_z" else None
    batch = stacked_tensor_batches(X, S, 64, SEEDS)(5)
    stack = _Stack(models)
    for _ in range(2):  # twice: the reused buffers must not leak one step into the next
        losses, codes = stack.step_grads(batch, 1e-2)
    for b, m in enumerate(models):
        loss, c = m.loss(tuple(None if t is None else t[b] for t in batch), 1e-2)
        params = stack.params_of(m)
        grads = torch.autograd.grad(loss, params)
        torch.testing.assert_close(losses[b], loss.detach(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(codes[b], c.detach(), atol=1e-6, rtol=1e-5)
        for j, (p, g) in enumerate(zip(params, grads)):
            torch.testing.assert_close(stack.grads[j][b], g, atol=1e-7, rtol=1e-4, msg=f"{setting} {kind} parameter {j}")


def test_batched_sparse_coding_equals_one_at_a_time():
    """Sparse coding (learned dictionary, stored per-sample codes): the batched active set gives each seed its own run."""
    from gapbound.synthetic.methods import ExperimentConfig, _train_setup, parse_method

    cfg = ExperimentConfig(setting="unknown", data=SyntheticConfig(n_train=256, n_test=256), methods=("SC",),
                           batch_size=64, curve_points=3,
                           train=TrainConfig(steps=60, lr=3e-3, l1=1e-3, resample_every=30, progress=False))
    problems = _problems()
    setups = [_train_setup(parse_method("SC"), cfg, p, s, None) for p, s in zip(problems, SEEDS)]
    models = [m for m, _, _ in setups]
    alone = copy.deepcopy(models)
    ref = [train(m, tensor_batches(p.X_train, None, 64, seed=s), c, evaluate=e)
           for m, p, s, (_, c, e) in zip(alone, problems, SEEDS, setups)]
    got = train_batched(models, stacked_tensor_batches(torch.stack([p.X_train for p in problems]), None, 64, SEEDS),
                        [c for _, c, _ in setups], evaluate=[e for _, _, e in setups])
    for a, b, ra, rb in zip(alone, models, ref, got):
        torch.testing.assert_close(b.dictionary.weight, a.dictionary.weight, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b.codes, a.codes, atol=1e-3, rtol=1e-3)
        assert float(b.lam) == float(a.lam)
        assert (ra.step_flops, ra.resampled) == (rb.step_flops, rb.resampled)
        assert [h["mcc"] for h in rb.history] == pytest.approx([h["mcc"] for h in ra.history], abs=1e-3)


def test_batched_nn_lasso_is_exact():
    """The batched active set returns the exact non-negative LASSO minimiser: KKT checked in float64, equal to solve()."""
    from gapbound.inference import solve
    from gapbound.training.coding_engine import batched_nn_lasso

    gen = torch.Generator().manual_seed(0)
    B, M, N, n, lam = 3, 8, 16, 96, 4e-3
    D = torch.nn.functional.normalize(torch.randn(B, M, N, generator=gen), dim=1)
    S = (torch.rand(B, n, N, generator=gen) < 0.3) * torch.rand(B, n, N, generator=gen)  # supports up to > M
    X = torch.bmm(S, D.transpose(1, 2))
    codes, fallback = batched_nn_lasso(D, X, lam, torch.zeros(B, n, N), iters=20)
    assert fallback == 0
    corr = torch.bmm((X - torch.bmm(codes, D.transpose(1, 2))).double(), D.double())  # D^T (x - D s)
    assert bool((codes >= 0).all())
    assert float(corr.max()) <= lam + 1e-5  # dual feasibility
    on = codes > 0
    torch.testing.assert_close(corr[on], torch.full_like(corr[on], lam), atol=1e-5, rtol=0)  # stationarity on the support
    for b in range(B):
        ref = solve(D[b], X[b], lam, method="fista", max_iter=200, tol=1e-9).codes
        torch.testing.assert_close(codes[b], ref, atol=1e-4, rtol=0)


def _lasso_case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    B, M, N, n = 3, 8, 16, 96
    D = torch.nn.functional.normalize(torch.randn(B, M, N, generator=gen), dim=1)
    S = (torch.rand(B, n, N, generator=gen) < 0.3) * torch.rand(B, n, N, generator=gen)  # supports up to > M
    return D, torch.bmm(S, D.transpose(1, 2)), S, gen


@pytest.mark.parametrize("start", ["zero", "planted", "noisy"])
def test_compiled_and_torch_active_sets_agree(start):
    """The CPU kernel (warm_active_set) and the torch active set (other devices) certify the same minimiser."""
    from gapbound.training.coding_engine import _active_set, _tol
    from gapbound.training.coding_kernel import warm_active_set

    D, X, S, gen = _lasso_case(1)
    lam = 4e-3
    init = {"zero": torch.zeros_like(S), "planted": S,  # a start wider than the rank, and one with wrong atoms
            "noisy": (S + 0.2 * torch.rand(S.shape, generator=gen) * (torch.rand(S.shape, generator=gen) < 0.2))}[start]
    D64 = D.double()
    ref, ok_ref = _active_set(init.double(), torch.bmm(D64.transpose(1, 2), D64), torch.bmm(X.double(), D64), lam, 32)
    got, ok = torch.zeros_like(ref), torch.zeros_like(ok_ref)
    warm_active_set(D.numpy(), X.numpy(), init.numpy(), lam, _tol(lam), 32, got.numpy(), ok.numpy())
    assert bool(ok.all()) and bool(ok_ref.all())
    corr = torch.bmm(X.double() - torch.bmm(got, D64.transpose(1, 2)), D64)  # D^T (x - D s), float64
    on = got > 0
    assert float((corr[on] - lam).abs().max()) <= 1e-12  # stationarity on the support (no ridge: to rounding)
    assert float(corr[~on].max()) <= lam + _tol(lam)  # dual feasibility off it
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)  # the torch version's 1e-10 ridge moves it by ~1e-7


def test_kernel_does_not_certify_non_finite_samples():
    from gapbound.training.coding_engine import _tol
    from gapbound.training.coding_kernel import warm_active_set

    D, X, S, _ = _lasso_case(3)
    X[0, 5, 2], X[1, 7, 0], S[2, 9, :] = float("nan"), float("inf"), 0.5  # two bad samples, one good dense start
    codes, ok = torch.zeros_like(S), torch.zeros(S.shape[:2], dtype=torch.bool)
    warm_active_set(D.numpy(), X.numpy(), S.numpy(), 4e-3, _tol(4e-3), 32, codes.numpy(), ok.numpy())
    assert not ok[0, 5] and not ok[1, 7] and int(ok.sum()) == ok.numel() - 2


def test_uncertified_samples_go_to_the_solver():
    """A sample the kernel does not certify (here: too few rounds) is solved by solve() and still exact."""
    from gapbound.inference import solve
    from gapbound.training.coding_engine import batched_nn_lasso

    D, X, _, _ = _lasso_case(2)
    lam = 4e-3
    codes, fallback = batched_nn_lasso(D, X, lam, torch.zeros(X.shape[0], X.shape[1], D.shape[2]), iters=20, rounds=2)
    assert fallback > 0  # from zero, two rounds code at most two atoms
    for b in range(D.shape[0]):
        torch.testing.assert_close(codes[b], solve(D[b], X[b], lam, method="fista", max_iter=200, tol=1e-9).codes,
                                   atol=1e-4, rtol=0)


def test_batched_resume_equals_uninterrupted(tmp_path):
    problems = _problems()
    cfgs = [TrainConfig(steps=90, lr=3e-3, resample_every=40, eval_every=30, checkpoint_every=30, progress=False, seed=s)
            for s in SEEDS]
    X = torch.stack([p.X_train for p in problems])
    batches = stacked_tensor_batches(X, None, 64, SEEDS)
    ev = [lambda m, p=p: {"mcc": mcc(p.S_test, m.encode(p.X_test))} for p in problems]
    ref = [_model("unknown", "sae", p, s) for p, s in zip(problems, SEEDS)]
    ref_res = train_batched(ref, batches, cfgs, evaluate=ev)

    ckpt = tmp_path / "stack.pt"
    calls = {"n": 0}

    class Stop(Exception):
        pass

    def dying(m):
        calls["n"] += 1
        if calls["n"] > 3 * len(SEEDS):  # evaluations at 0, 30, 60 for every model, then die
            raise Stop
        return {"mcc": 0.0}

    first = [_model("unknown", "sae", p, s) for p, s in zip(problems, SEEDS)]
    with pytest.raises(Stop):
        train_batched(first, batches, cfgs, evaluate=[dying] * len(SEEDS), checkpoint_path=str(ckpt))
    resumed = [_model("unknown", "sae", p, s + 100) for p, s in zip(problems, SEEDS)]  # weights must come from the file
    res = train_batched(resumed, batches, cfgs, evaluate=ev, checkpoint_path=str(ckpt))
    # the interrupted invocation's training seconds come with the stack (recorded at its step-60 checkpoint)
    assert all(r.seconds_before == res[0].seconds_before > 0 for r in res) and all(r.seconds_before == 0.0 for r in ref_res)
    for a, b in zip(ref, resumed):
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, atol=0, rtol=0)
    with pytest.raises(ValueError, match="different batched run"):
        other = [TrainConfig(**{**c.__dict__, "lr": 1e-3}) for c in cfgs]
        train_batched(resumed, batches, other, checkpoint_path=str(ckpt))


@pytest.mark.parametrize("chunk_epochs", [2, 64])
def test_stack_batches_matches_stacked_tensor_batches(monkeypatch, chunk_epochs):
    """Inputs, codes and row indices equal each model's tensor_batches, across permutation chunks and out of order."""
    import gapbound.training.engine as engine

    problems = _problems()
    monkeypatch.setattr(engine, "_PERM_CHUNK", chunk_epochs * problems[0].X_train.shape[0])
    X, S = torch.stack([p.X_train for p in problems]), torch.stack([p.S_train for p in problems])
    a = stacked_tensor_batches(X, S, 100, SEEDS)
    b = stack_batches([tensor_batches(p.X_train, p.S_train, 100, seed=s) for p, s in zip(problems, SEEDS)])
    for step in (0, 1, 2, 3, 7, 4, 9, 8, 1, 0, 13):  # 2 steps per epoch: within and across chunks, and back
        for got, want in zip(a(step), b(step)):
            torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_bad_input():
    p = _problems()[0]
    sae = _model("unknown", "sae", p, 0)
    mlp = _model("unknown", "mlp", p, 0)
    cfg = TrainConfig(steps=2, progress=False)
    X = torch.stack([p.X_train, p.X_train])
    with pytest.raises(ValueError, match="one class and shape"):
        train_batched([sae, mlp], stacked_tensor_batches(X, None, None, (0, 1)), [cfg, cfg])
    with pytest.raises(ValueError, match="share every TrainConfig"):
        train_batched([sae, copy.deepcopy(sae)], stacked_tensor_batches(X, None, None, (0, 1)),
                      [cfg, TrainConfig(steps=3, progress=False)])
    with pytest.raises(ValueError, match="one config"):
        train_batched([sae], stacked_tensor_batches(X[:1], None, None, (0,)), [cfg, cfg])
    topk = Autoencoder(SAE(8, 16, activation="topk", k=3), Dictionary(8, 16))
    assert not can_batch(topk) and can_batch(sae)
    with pytest.raises(ValueError, match="gapbound.training.train"):
        train_batched([topk], stacked_tensor_batches(X[:1], None, None, (0,)), [cfg])
    with pytest.raises(ValueError, match="number of models"):
        stacked_tensor_batches(X, None, 64, (0,))
    bad = X.clone()
    bad[1, :, 0] = float("nan")  # model 1's data is broken: reported, not trained on silently
    with pytest.raises(FloatingPointError, match=r"models \[1\]"):
        train_batched([copy.deepcopy(sae), copy.deepcopy(sae)], stacked_tensor_batches(bad, None, None, (0, 1)),
                      [TrainConfig(steps=60, progress=False, seed=s) for s in (0, 1)])


def test_run_seeds_equals_run_seed():
    """The synthetic suite's batched path gives each seed run_seed's result (up to float rounding)."""
    from gapbound.synthetic.batched import run_seeds
    from gapbound.synthetic.methods import ExperimentConfig, run_seed

    for setting, methods in (("known_z", ("SAE", "MLP-8")), ("unknown", ("SAE", "MLP-8", "SC"))):
        cfg = ExperimentConfig(setting=setting, data=SyntheticConfig(n_train=128, n_test=128), methods=methods,
                               batch_size=64, curve_points=2,
                               train=TrainConfig(steps=40, lr=1e-3, resample_every=20, progress=False))
        batched = run_seeds(cfg, [0, 1])
        for seed, got in zip((0, 1), batched):
            ref = run_seed(cfg, seed)
            assert got.keys() == ref.keys()
            for m in ref:
                assert got[m]["mcc"] == pytest.approx(ref[m]["mcc"], abs=1e-4), (setting, seed, m)
                assert got[m]["train_flops"] == ref[m]["train_flops"]
                assert [c[0] for c in got[m]["curve"]] == [c[0] for c in ref[m]["curve"]]


def test_protocol_flag_sets_lr_and_steps():
    from simulations.synthetic import AUTHORS_STEPS, PAPER_STEPS, build_parser, configs_from_args

    def cfgs(*argv):
        return {c.setting: c.train for c in configs_from_args(build_parser().parse_args(list(argv)))}

    paper, authors = cfgs(), cfgs("--protocol", "authors")
    assert {s: t.steps for s, t in paper.items()} == PAPER_STEPS and {t.lr for t in paper.values()} == {3e-4}
    assert {s: t.steps for s, t in authors.items()} == AUTHORS_STEPS and {t.lr for t in authors.values()} == {1e-3}
    assert {t.lr for t in cfgs("--protocol", "authors", "--lr", "5e-4").values()} == {5e-4}  # explicit flags win


@pytest.mark.parametrize("hidden", [None, 24])
def test_benchmark_products_are_the_counted_step_flops(hidden):
    """benchmarks.train_engine's matmul-at-shape probe times exactly the products FlopCounterMode counts in a step."""
    from benchmarks.train_engine import stacked_products
    from gapbound.utils.flops import train_step_flops

    p = _problems()[0]
    m = _model("unknown", "sae" if hidden is None else "mlp", p, 0)
    batch = stacked_tensor_batches(p.X_train[None], None, 64, (0,))(0)
    counted = train_step_flops(lambda: m.loss(tuple(None if t is None else t[0] for t in batch), 1e-3)[0],
                               [q for q in m.parameters() if q.requires_grad])
    widths = [8, 16] if hidden is None else [8, hidden, 16]
    assert counted == sum(2 * r * k * c for r, k, c in stacked_products(1, 64, widths, learned_dict=True))


def test_suite_split_puts_the_longest_setting_alone():
    from benchmarks.train_engine import two_worker_split

    assert two_worker_split({"known_z": 174.0, "unknown": 1455.0, "known_d": 168.0}) == [["unknown"], ["known_z", "known_d"]]
    loads = two_worker_split({"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0})
    assert sorted(len(w) for w in loads) == [2, 2] and {frozenset(w) for w in loads} == {frozenset("ac"), frozenset("bd")}
