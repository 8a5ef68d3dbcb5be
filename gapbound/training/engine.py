"""Batched training engine: many small models of one shape trained as one stacked model.

At the paper's sizes (N = 16, M = 8) a training step is microseconds of
arithmetic; one-model-at-a-time training pays the per-step overhead (Python,
autograd, optimiser, kernel dispatch) once per (method, seed). Here the ``B``
models' weights are stacked along a leading axis and every step is a handful of
batched matmuls (``torch.baddbmm`` / ``torch.bmm``) plus one fused Adam update
on the stacked tensors, so that overhead is paid once for all ``B`` models.

Each model's run is the run :func:`~gapbound.training.train` would give it
alone: the summed loss has, for each model, the gradient of its own loss; Adam
is element-wise; the dictionary renormalisation, dead-latent tracking,
resampling (the models' own :meth:`resample` with the same per-seed
generators), evaluation points, FLOP accounting and checkpoint/resume follow
the same rules. Results agree with the one-at-a-time loop up to floating-point
summation order (``tests/test_engine.py`` checks this).

Supported models: :class:`~gapbound.training.Supervised` and
:class:`~gapbound.training.Autoencoder` whose encoder is a plain ReLU
:class:`~gapbound.models.SAE` or an :class:`~gapbound.models.MLPEncoder`
(frozen or learned :class:`~gapbound.models.Dictionary`), and
:class:`~gapbound.models.coding.SparseCoding` with stored per-sample codes
(:mod:`.coding_engine`: all models' per-sample inference in one batched solve).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..synthetic.data import make_generator
from ..utils.flops import train_step_flops
from ..utils.io import atomic_save, load_checkpoint
from .batches import Batch, BatchFn, epoch_permutation
from .coding_engine import CodingStack, can_batch_coding
from .loop import TrainConfig, TrainResult, resume_key, seconds_before, seconds_so_far
from .objectives import Autoencoder, Supervised, l1_penalty, supervised_loss

_CHECK_EVERY = 50  # steps between loss evaluations (finiteness check, progress bar)
_PERM_CHUNK = 1 << 16  # epoch-permutation indices per model drawn at once (64 epochs of 1,024 rows: 512 KiB)

__all__ = ["StackedBatchFn", "stack_batches", "stacked_tensor_batches", "can_batch", "train_batched"]

StackedBatchFn = Callable[[int], Batch]
"""Maps a step to ``(x, s, idx)`` stacked over models: ``B x b x M``, ``B x b x N`` or None, ``B x b`` or None."""


def stack_batches(fns: Sequence[BatchFn]) -> StackedBatchFn:
    """Stack per-model :data:`~gapbound.training.BatchFn` s (any source, e.g. ``stream_batches``) step by step."""
    fns = list(fns)

    def fn(i: int) -> Batch:
        got = [f(i) for f in fns]
        return tuple(None if got[0][k] is None else torch.stack([g[k] for g in got]) for k in range(3))  # type: ignore[return-value]

    return fn


def stacked_tensor_batches(X: torch.Tensor, S: torch.Tensor | None, batch_size: int | None, seeds: Sequence[int]) -> StackedBatchFn:
    """:func:`~gapbound.training.tensor_batches` of ``B`` in-memory datasets at once.

    Each epoch's rows of all models are gathered in one indexing op (one more copy of the
    sets in memory) and its steps' batches are views of that copy.

    Parameters
    ----------
    X : torch.Tensor
        ``B x n x M`` inputs (one training set per model).
    S : torch.Tensor, optional
        ``B x n x N`` true codes (known Z).
    batch_size : int, optional
        Rows per batch; ``None`` (or ``>= n``) gives the full sets every step.
    seeds : sequence of int
        Model ``b`` sees the batches of ``tensor_batches(X[b], S[b], batch_size, seed=seeds[b])``.
    """
    B, n = X.shape[:2]
    if len(seeds) != B or (S is not None and S.shape[:2] != (B, n)):
        raise ValueError(f"X ({tuple(X.shape)}), S and seeds ({len(seeds)}) must agree on the number of models and rows")
    if batch_size is None or batch_size >= n:
        idx = torch.arange(n, device=X.device).expand(B, n)
        return lambda i: (X, S, idx)
    per_epoch = n // batch_size
    used = per_epoch * batch_size
    # Permutations are drawn for many epochs at once: drawn one epoch at a time between training steps,
    # each cost ~4x its isolated time (measured: 80-96 us per step of 5 seeds at N = 16, the seeding
    # dominating), which was a fifth of an MLP-32 stack step.
    chunk = max(1, _PERM_CHUNK // n)
    offsets = n * torch.arange(B, device=X.device)[:, None]
    perms: dict[int, torch.Tensor] = {}
    cache: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}

    def take(T: torch.Tensor, flat_rows: torch.Tensor) -> torch.Tensor:
        # one index_select on the flattened sets: about half the cost of X[models, rows] at these sizes
        return T.reshape(B * n, -1).index_select(0, flat_rows).view(B, used, -1)

    def fn(i: int) -> Batch:
        epoch, k = divmod(i, per_epoch)
        if epoch not in cache:  # the epoch's rows of every model, gathered once; its steps are slices of them
            if epoch not in perms:
                perms.clear()
                start = epoch - epoch % chunk
                for e in range(start, start + chunk):
                    perms[e] = torch.stack([epoch_permutation(n, s, e)[:used] for s in seeds])
            cache.clear()
            rows = perms[epoch].to(X.device)
            flat_rows = (rows + offsets).flatten()
            cache[epoch] = (rows, take(X, flat_rows), None if S is None else take(S, flat_rows))
        rows, x, s = cache[epoch]
        part = slice(k * batch_size, (k + 1) * batch_size)
        return x[:, part], None if s is None else s[:, part], rows[:, part]

    return fn


def _layers(model: nn.Module) -> list[nn.Linear]:
    """The encoder's affine layers (ReLU between and after them), or ValueError if the engine cannot stack it."""
    from ..models import SAE, MLPEncoder  # run time only: training must not import models at import time

    enc = getattr(model, "encoder", None)
    if isinstance(enc, MLPEncoder):
        return [enc.net[0], enc.net[2]]
    if (isinstance(enc, SAE) and enc.activation == "relu" and not enc.apply_b_dec_to_input and enc.input_norm == "none"
            and enc.matmul_form == "linear"):
        return [enc.linear]
    raise ValueError(f"the batched engine trains Supervised/Autoencoder models with a ReLU SAE or MLP encoder, "
                     f"got {type(model).__name__} with {type(enc).__name__}; use gapbound.training.train")


def can_batch(model: nn.Module) -> bool:
    """Whether :func:`train_batched` can train ``model`` (else use :func:`~gapbound.training.train`)."""
    if can_batch_coding(model):
        return True
    try:
        _layers(model)
    except ValueError:
        return False
    return isinstance(model, (Supervised, Autoencoder))


class _Stack:
    """Stacked weights of ``B`` same-shaped models in one flat parameter, with hand-written gradients.

    One flat tensor makes the Adam update a single fused kernel; the gradients
    are written by a few batched matmuls instead of an autograd graph (three
    times fewer dispatches per step at N = 16). They are the gradients autograd
    computes for each model's own loss (``tests/test_engine.py`` compares the
    trained weights with the one-at-a-time loop's).
    """

    def __init__(self, models: Sequence[nn.Module]):
        self.models = list(models)
        self.kind = type(models[0])
        shapes = {(type(m), tuple(tuple(p.shape) for p in self.params_of(m))) for m in self.models}
        if len(shapes) != 1 or not all(can_batch(m) for m in self.models):
            raise ValueError(f"models must share one class and shape to be stacked, got {sorted(map(str, shapes))}")
        self.learned_dict = self.kind is Autoencoder and self.models[0].dictionary.weight.requires_grad
        if self.kind is Autoencoder and any(m.dictionary.weight.requires_grad != self.learned_dict for m in self.models):
            raise ValueError("models must all learn their dictionary or all keep it fixed")
        with torch.no_grad():
            stacked = [torch.stack([p.detach() for p in ps]) for ps in zip(*(self.params_of(m) for m in self.models))]
            self.flat = nn.Parameter(torch.cat([t.flatten() for t in stacked]))
            self.flat.grad = torch.zeros_like(self.flat)
            self.D = None if self.kind is Supervised or self.learned_dict else torch.stack(
                [m.dictionary.weight.detach() for m in self.models])
        self.shapes = [t.shape for t in stacked]
        self.params = self.views(self.flat)
        self.grads = self.views(self.flat.grad)
        self.n_layers = (len(self.params) - self.learned_dict) // 2
        self.n_latents = self.shapes[2 * self.n_layers - 1][-1]
        self._bufs: dict[str, torch.Tensor] = {}
        self._const, self._const_key = torch.empty(0), None

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The stacked tensors (``B x ...``) inside a flat buffer laid out like :attr:`flat`."""
        out, start = [], 0
        for shape in self.shapes:
            n = shape.numel()
            out.append(flat[start : start + n].view(shape))
            start += n
        return out

    def params_of(self, model: nn.Module) -> list[nn.Parameter]:
        ps = [p for layer in _layers(model) for p in (layer.weight, layer.bias)]
        if isinstance(model, Autoencoder) and model.dictionary.weight.requires_grad:
            ps.append(model.dictionary.weight)
        return ps

    @torch.no_grad()
    def load(self, b: int) -> nn.Module:
        """Model ``b`` with the stacked weights copied in."""
        for p, P in zip(self.params_of(self.models[b]), self.params):
            p.copy_(P[b])
        return self.models[b]

    @torch.no_grad()
    def store(self, b: int) -> None:
        """Copy model ``b``'s weights back into the stack."""
        for p, P in zip(self.params_of(self.models[b]), self.params):
            P[b].copy_(p)

    def index_of(self, p: nn.Parameter, b: int) -> int:
        """Position in :attr:`params` of model ``b``'s parameter ``p``."""
        return next(j for j, q in enumerate(self.params_of(self.models[b])) if q is p)

    def _buffer(self, name: str, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A preallocated ``shape`` tensor reused every step (fresh multi-MiB tensors cost page faults each step)."""
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype:
            buf = self._bufs[name] = like.new_empty(shape)
        return buf

    def _constant(self, like: torch.Tensor, value: float) -> torch.Tensor:
        """A ``like``-shaped tensor of ``value``, filled once and reused while shape and value stay (read-only)."""
        key = (like.shape, like.dtype, like.device, value)
        if self._const_key != key:
            self._const, self._const_key = torch.full_like(like, value), key
        return self._const

    def _layer_grads(self, j: int, inp: torch.Tensor, dz: torch.Tensor) -> None:
        """Write layer ``j``'s weight and bias gradients, ``dz^T inp`` and ``sum_b dz``."""
        if inp.shape[2] < dz.shape[2]:
            # Narrow input (the SAE, an MLP's first layer): bmm(dz^T, inp) with the wider operand transposed ran
            # 2x (8 -> 16) to 4.6x (8 -> 1024) slower than (inp^T dz), transposed on the copy into the gradient.
            self.grads[2 * j].copy_(torch.bmm(inp.transpose(1, 2), dz).transpose(1, 2))
        else:
            torch.bmm(dz.transpose(1, 2), inp, out=self.grads[2 * j])
        torch.sum(dz, 1, out=self.grads[2 * j + 1])

    @torch.no_grad()
    def step_grads(self, batch: Batch, l1: float, with_loss: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Write every model's gradient into ``flat.grad``; return per-model losses (``B``, if ``with_loss``) and codes.

        The losses are not needed for the gradients; skipping them saves a fifth of a step at N = 16.

        Autoencoder: ``r = c D^T - x``, loss ``mean(r^2) + l1 mean_b sum c``, so
        ``dL/dz = (2 r D / (b M) + l1 / b) 1[z > 0]`` and ``dL/dD = 2 r^T c / (b M)``.
        Supervised: loss ``mean(where(s > 0, (z - s)^2, c^2))``, so
        ``dL/dz = 2 where(s > 0, z - s, c) / (b N)``. Then the usual chain through the layers,
        the ReLU's derivative taken from its output (``h > 0`` exactly where ``z > 0``), so hidden
        layers keep only their activations, in place, in preallocated buffers.
        """
        x, s, _ = batch
        feats = [x]
        for j in range(self.n_layers - 1):  # hidden layers: ReLU in place, in a reused buffer
            W, b = self.params[2 * j], self.params[2 * j + 1]
            h = self._buffer(f"h{j}", x, (*x.shape[:2], W.shape[1]))
            feats.append(torch.baddbmm(b.unsqueeze(1), feats[-1], W.transpose(1, 2), out=h).relu_())
        W, b = self.params[2 * self.n_layers - 2], self.params[2 * self.n_layers - 1]
        z = torch.baddbmm(b.unsqueeze(1), feats[-1], W.transpose(1, 2))
        c = torch.relu(z)
        n, N = c.shape[1], c.shape[2]
        if self.kind is Supervised:
            if s is None:
                raise ValueError("the supervised (known Z) objective needs true codes in every batch")
            losses = supervised_loss(z, c, s) if with_loss else None
            dz = torch.where(s > 0, z - s, c).mul_(2.0 / (n * N))
        else:
            D = self.params[-1] if self.learned_dict else self.D
            scale = 2.0 / (n * x.shape[2])
            dr = torch.baddbmm(x, c, D.transpose(1, 2), beta=-scale, alpha=scale)  # dL/d(c D^T) = scale (c D^T - x)
            losses = dr.square().mean((1, 2)) / scale**2 + l1 * l1_penalty(c) if with_loss else None
            if self.learned_dict:
                torch.bmm(dr.transpose(1, 2), c, out=self.grads[-1])
            dz = torch.ops.aten.threshold_backward(torch.baddbmm(self._constant(c, l1 / n), dr, D), c, 0.0)
        for j in reversed(range(self.n_layers)):
            self._layer_grads(j, feats[j], dz)
            if j:
                dh = torch.bmm(dz, self.params[2 * j], out=self._buffer(f"dh{j - 1}", dz, feats[j].shape))
                dz = torch.ops.aten.threshold_backward.grad_input(dh, feats[j], 0.0, grad_input=dh)
        return losses, c

    @torch.no_grad()
    def after_step(self) -> None:
        if self.learned_dict:
            D = self.params[-1]
            D.div_(torch.linalg.vector_norm(D, dim=1, keepdim=True).clamp_min_(1e-12))


class _FusedAdam:
    """``torch.optim.Adam(fused=True)`` on the one flat parameter, without the optimiser wrapper's per-step cost.

    It calls the same kernel (``torch._fused_adam_``) with the same state, so
    the update is bit-identical to what :func:`~gapbound.training.train` does
    for each model alone; the wrapper (hooks, grouping by device, profiling
    records) cost 10x the kernel per step at N = 16 (measured 0.78 ms vs
    0.06 ms under load).
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if param.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"the batched engine trains float32/float64 weights, got {param.dtype}")
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.step_count = torch.zeros((), dtype=torch.float32, device=param.device)

    @torch.no_grad()
    def step(self) -> None:
        self.step_count.add_(1)
        torch._fused_adam_([self.param], [self.param.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count],
                           amsgrad=False, lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0,
                           eps=self.eps, maximize=False, grad_scale=None, found_inf=None)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "step": self.step_count}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step_count.copy_(state["step"])


def _check_configs(configs: Sequence[TrainConfig]) -> TrainConfig:
    """The configuration the models share (they may differ only in seed and checkpoint path)."""
    base = replace(configs[0], seed=0, checkpoint_path=None)
    for c in configs:
        if replace(c, seed=0, checkpoint_path=None) != base:
            raise ValueError(f"batched models must share every TrainConfig setting but seed, got {configs[0]} and {c}")
    return base


def train_batched(
    models: Sequence[nn.Module],
    batches: StackedBatchFn,
    configs: Sequence[TrainConfig],
    evaluate: Sequence[Callable[[nn.Module], dict]] | None = None,
    checkpoint_path: str | None = None,
    desc: str = "train (batched)",
) -> list[TrainResult]:
    """Train ``B`` same-shaped models at once; each ends as :func:`~gapbound.training.train` would leave it.

    Parameters
    ----------
    models : sequence of nn.Module
        ``B`` :class:`Supervised` or :class:`Autoencoder` models of one class and shape
        (see :func:`can_batch`), initialised as for one-at-a-time training. Their
        weights are overwritten with the trained ones.
    batches : callable
        ``batches(step) -> (x, s, idx)`` stacked over the models (:func:`stacked_tensor_batches`,
        :func:`stack_batches`); deterministic in ``step``.
    configs : sequence of TrainConfig
        One per model, equal except ``seed`` (which seeds that model's resampling).
        Their ``checkpoint_path`` is ignored: the stack checkpoints to ``checkpoint_path``.
    evaluate : sequence of callables, optional
        ``evaluate[b](model) -> dict``, called as :func:`~gapbound.training.train` calls its callback.
    checkpoint_path : str, optional
        File to checkpoint the whole stack to (every ``checkpoint_every`` steps and at the end) and resume from.
    desc : str
        Progress-bar label.

    Returns
    -------
    list of TrainResult
        One per model.
    """
    if not models or len(configs) != len(models) or (evaluate is not None and len(evaluate) != len(models)):
        raise ValueError(f"need one config (and evaluate callback) per model, got {len(models)} models, "
                         f"{len(configs)} configs, {None if evaluate is None else len(evaluate)} callbacks")
    t0 = time.perf_counter()
    config = _check_configs(configs)
    B = len(models)
    key = {"configs": [resume_key(asdict(c)) for c in configs], "B": B}
    # FLOPs of a step measured as the loop measures them, on the fresh models; per model for sparse coding,
    # whose inference work depends on the data (its loss also writes the probe rows' codes, as alone)
    probe = batches(0)
    per_model = range(B) if can_batch_coding(models[0]) else [0]
    flops = [train_step_flops(lambda b=b: models[b].loss(tuple(None if t is None else t[b] for t in probe), config.l1)[0],
                              [p for p in models[b].parameters() if p.requires_grad]) for b in per_model]
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    state = load_checkpoint(ckpt) if ckpt is not None and ckpt.exists() else None
    if state is not None:
        if state.get("key") != key:
            raise ValueError(f"checkpoint {ckpt} was written by a different batched run; remove it or change checkpoint_path")
        for m, saved in zip(models, state["models"]):
            m.load_state_dict(saved)
    stack = CodingStack(models) if can_batch_coding(models[0]) else _Stack(models)
    opt = _FusedAdam(stack.flat, lr=config.lr)
    # seconds_before is the whole stack's: its models train together
    results = [TrainResult(step_flops=flops[b if len(flops) > 1 else 0], seconds_before=seconds_before(state)) for b in range(B)]
    # Codes summed over the steps since the last resampling point, on the models' device: codes are >= 0,
    # so a positive sum marks a latent that fired (one add per step, no copy to the host).
    activity = torch.zeros(B, stack.n_latents, dtype=stack.flat.dtype, device=stack.flat.device)
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
        activity.copy_(state["fired"])
        for r, h, n in zip(results, state["history"], state["resampled"]):
            r.history, r.resampled = h, n

    def checkpoint(step: int) -> None:
        if ckpt is not None:
            # whole state dicts (not only the stacked tensors): a resumed model equals the uninterrupted one everywhere
            atomic_save({"models": [stack.load(b).state_dict() for b in range(B)], "optimizer": opt.state_dict(), "step": step,
                         "fired": fired(), "history": [r.history for r in results],
                         "resampled": [r.resampled for r in results], "key": key,
                         "train_s": seconds_so_far(results[0].seconds_before, t0)}, ckpt)

    def record(step: int) -> None:
        if evaluate is None:
            return
        for b, (r, ev) in enumerate(zip(results, evaluate)):
            if any(h["step"] == step for h in r.history):
                continue
            model = stack.load(b)
            model.eval()
            with torch.no_grad():
                metrics = ev(model)
            model.train()
            r.history.append({"step": step, "train_flops": step * r.step_flops, **metrics})

    def fired() -> torch.Tensor:
        """``B x latents`` bool (CPU): which latents fired since the last resampling point."""
        return (activity > 0).cpu()

    def resample(done: int, batch: Batch, fired: torch.Tensor) -> None:
        for b in (~fired).any(1).nonzero().flatten().tolist():
            dead = ~fired[b]
            model = stack.load(b)
            one = tuple(None if t is None else t[b] for t in batch)
            touched = model.resample(dead, one, make_generator(configs[b].seed, 11, done))
            stack.store(b)
            idx = dead.nonzero().flatten()
            for p, dim in touched:  # zero the Adam moments of the rewritten rows, as reset_adam_rows does alone
                j = stack.index_of(p, b)
                for moment in (opt.exp_avg, opt.exp_avg_sq):
                    stack.views(moment)[j][b].index_fill_(dim, idx, 0.0)
            results[b].resampled += int(dead.sum())

    if start == 0 and config.eval_every:
        record(0)
    bar = tqdm(range(start, config.steps), desc=desc, disable=not config.progress, initial=start, total=config.steps,
               unit="step", dynamic_ncols=True, leave=False)
    losses = torch.full((B,), float("nan"))
    for step in bar:
        batch = batches(step)
        # Losses every _CHECK_EVERY steps and at the last: a non-finite loss stays non-finite, so it is
        # still caught (within _CHECK_EVERY steps of where it appeared).
        check = (step + 1) % _CHECK_EVERY == 0 or step + 1 == config.steps
        step_losses, codes = stack.step_grads(batch, config.l1, with_loss=check)
        if step_losses is not None:
            losses = step_losses
            if not bool(torch.isfinite(losses).all()):
                bad = torch.isfinite(losses).logical_not().nonzero().flatten().tolist()
                raise FloatingPointError(f"loss became non-finite by step {step} for models {bad}; lower lr (now {config.lr})")
        opt.step()
        stack.after_step()
        activity += codes.sum(1)
        done = step + 1
        if config.resample_every and done % config.resample_every == 0 and done < config.steps:
            if not (now := fired()).all():
                resample(done, batch, now)
            activity.zero_()
        if config.eval_every and done % config.eval_every == 0:
            record(done)
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            checkpoint(done)
        if done % (4 * _CHECK_EVERY) == 0:
            bar.set_postfix(loss=f"{losses.mean().item():.3e}", refresh=False)
    record(config.steps)
    for b, r in enumerate(results):
        stack.load(b)
        r.final_loss = float(losses[b].detach()) if start < config.steps else float("nan")
    checkpoint(config.steps)
    return results
