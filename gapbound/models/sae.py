"""The sparse autoencoder: one class for every architecture gapbound trains, reads or writes.

An :class:`SAE` maps activations ``x`` (rows are samples, ``n x M``) to codes
``s`` (``n x N``) and back, with SAELens's conventions::

    x'    = normalise(x)                       # input_norm, per sample at run time
    f     = x' - b_dec   if apply_b_dec_to_input else x'
    z     = f W^T + b                          # W = linear.weight (N x M), b = linear.bias
    s     = g(z)                               # ReLU, TopK or JumpReLU
    x_hat = s W_dec + b_dec  =  s D^T + b_dec  # D = dictionary (M x N)

ReLU, TopK and JumpReLU are *linear-gated*: each code is its pre-activation or
0, the encoder class the amortisation-gap bound of :mod:`gapbound.theory` covers.
``gated`` SAEs (Rajamanoharan et al. 2024) gate on a second pre-activation and
are read, encoded and measured but not covered by the bound. With
``rescale_acts_by_decoder_norm`` (SAELens TopK) the pre-activations are
multiplied by the decoder row norms before TopK, and :attr:`SAE.dictionary`
holds the unit-norm atoms, so ``decode(s) = s D^T + b_dec`` always holds.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.validation import as_tensor, check_dictionary, check_float, check_int
from .activations import Activation, jump_relu, topk_relu

__all__ = ["SAE", "ARCHITECTURES", "INPUT_NORMS", "CALLER_SIDE_NORMS"]

ARCHITECTURES = ("relu", "topk", "jumprelu", "gated")
# SAELens's normalize_activations modes. "expected_average_only_in" (a dataset-wide factor) and
# "covariance_whitening" (a dataset-wide affine map) are not applied by SAELens at run time (the caller
# transforms the input, or the map was folded into the weights), so encode treats them as "none".
INPUT_NORMS = ("none", "expected_average_only_in", "covariance_whitening", "constant_norm_rescale", "layer_norm")
CALLER_SIDE_NORMS = ("expected_average_only_in", "covariance_whitening")
_LAYER_NORM_EPS = 1e-5  # SAELens's run-time layer norm


class SAE(nn.Module):
    """Sparse autoencoder: encoder ``g(W f(x) + b)`` and affine decoder ``s W_dec + b_dec``.

    Parameters
    ----------
    M : int
        Input dimension (SAELens ``d_in``).
    N : int
        Number of latents (SAELens ``d_sae``).
    activation : {"relu", "topk", "jumprelu", "gated"}
        ``relu``: ``max(z, 0)``. ``topk``: keep the ``k`` largest pre-activations
        (then ReLU), zero the rest. ``jumprelu``: ``z * 1[z > theta]`` with a
        learnable per-latent threshold ``theta >= 0``. ``gated``: ``1[W f + b_gate > 0]
        * relu((W * exp(r_mag)) f + b)``.
    k : int, optional
        Active latents for ``topk``.
    threshold : float
        Initial JumpReLU threshold.
    bandwidth : float
        Width of the rectangle kernel of the JumpReLU threshold's straight-through
        gradient (relative to pre-activations of order 1).
    apply_b_dec_to_input : bool
        Subtract ``b_dec`` from the input before the encoder (SAELens's default for its SAEs).
    rescale_acts_by_decoder_norm : bool
        TopK only: multiply pre-activations by the decoder row norms before TopK and
        divide the codes by them before decoding (SAELens TopK).
    input_norm : {"none", "expected_average_only_in", "covariance_whitening", "constant_norm_rescale", "layer_norm"}
        SAELens's ``normalize_activations``; the last two are applied per sample by :meth:`normalise`,
        the dataset-wide ones are, as in SAELens, left to the caller.
    metadata : dict, optional
        Free-form provenance written to ``cfg.json["metadata"]`` (hook name, model, context size, BOS ...).

    Attributes
    ----------
    linear : torch.nn.Linear
        The pre-activation map: ``weight`` is ``W`` (``N x M``, SAELens ``W_enc^T``), ``bias`` is ``b``.
    W_dec, b_dec : torch.nn.Parameter
        Decoder (``N x M``) and decoder bias (``M``). A new SAE starts with the tied
        initialisation ``W_dec = W / ||W||`` (rows), drawing no random numbers.
    """

    def __init__(
        self, M: int, N: int, activation: Activation = "relu", k: int | None = None, threshold: float = 1e-3,
        bandwidth: float = 0.05, *, apply_b_dec_to_input: bool = False, rescale_acts_by_decoder_norm: bool = False,
        input_norm: str = "none", metadata: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.M = check_int("M", M, minimum=1)
        self.N = check_int("N", N, minimum=1)
        if activation not in ARCHITECTURES:
            raise ValueError(f"activation must be one of {', '.join(map(repr, ARCHITECTURES))}, got {activation!r}")
        self.activation = activation
        if activation == "topk":
            if k is None:
                raise ValueError("k must be given for activation='topk'")
            self.k = check_int("k", k, minimum=1, maximum=N)
        else:
            self.k = None
        if rescale_acts_by_decoder_norm and activation != "topk":
            raise ValueError("rescale_acts_by_decoder_norm applies to activation='topk' only (as in SAELens)")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(map(repr, INPUT_NORMS))}, got {input_norm!r}")
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.input_norm = input_norm
        self.metadata = dict(metadata or {})
        # How W f + b is evaluated: nn.Linear's fused addmm (gapbound's training), or f @ W_enc then + b as
        # SAELens and dictionary_learning's W_enc classes do. The two differ in the last bits (1e-5 at d_in=768),
        # enough to flip a TopK choice or a JumpReLU gate, so an SAE read from files keeps its library's form.
        # gapbound trains no gated SAEs; its own are written in (and so computed like) SAELens's form.
        self.matmul_form = "saelens" if activation == "gated" else "linear"
        self.linear = nn.Linear(M, N)
        if activation == "jumprelu":
            check_float("threshold", threshold, minimum=0.0)
            self.log_threshold = nn.Parameter(torch.full((N,), float(threshold)).clamp_min(1e-8).log())
            self.bandwidth = check_float("bandwidth", bandwidth, minimum=0.0, strict_minimum=True)
        if activation == "gated":
            self.b_gate = nn.Parameter(torch.zeros(N))
            self.r_mag = nn.Parameter(torch.zeros(N))
        with torch.no_grad():
            w = self.linear.weight.detach()
            self.W_dec = nn.Parameter(w / w.norm(dim=1, keepdim=True).clamp_min(1e-12))
        self.b_dec = nn.Parameter(torch.zeros(M))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_weights(
        cls, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor,
        activation: Activation = "relu", *, k: int | None = None, threshold: torch.Tensor | None = None,
        b_gate: torch.Tensor | None = None, r_mag: torch.Tensor | None = None, apply_b_dec_to_input: bool = True,
        rescale_acts_by_decoder_norm: bool = False, input_norm: str = "none", metadata: dict[str, Any] | None = None,
        matmul_form: str = "saelens",
    ) -> "SAE":
        """An SAE from weights in SAELens's convention, keeping their dtype and device.

        Parameters
        ----------
        W_enc, b_enc, W_dec, b_dec : torch.Tensor
            Shapes ``(d_in, d_sae)``, ``(d_sae,)``, ``(d_sae, d_in)``, ``(d_in,)``; for ``gated``
            ``b_enc`` is the magnitude bias ``b_mag``.
        threshold : torch.Tensor, optional
            JumpReLU thresholds (``d_sae``); negative ones act as 0 (``relu(z) 1[z > theta]``).
        b_gate, r_mag : torch.Tensor, optional
            Gated SAEs' gate bias and log magnitude scale (``d_sae``).
        matmul_form : {"saelens", "linear"}
            Evaluate pre-activations as ``f @ W_enc + b`` (SAELens) or with ``nn.Linear``
            (dictionary_learning's ``encoder`` layers), so codes match the library bit for bit.
        Other parameters as in :class:`SAE`.
        """
        if matmul_form not in ("saelens", "linear"):
            raise ValueError(f"matmul_form must be 'saelens' or 'linear', got {matmul_form!r}")
        if not isinstance(W_enc, torch.Tensor) or W_enc.ndim != 2:
            raise ValueError(f"W_enc must be a 2-D tensor (d_in, d_sae), got {getattr(W_enc, 'shape', type(W_enc).__name__)}")
        M, N = W_enc.shape
        given = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec, "threshold": threshold,
                 "b_gate": b_gate, "r_mag": r_mag}
        shapes = {"W_enc": (M, N), "b_enc": (N,), "W_dec": (N, M), "b_dec": (M,), "threshold": (N,), "b_gate": (N,), "r_mag": (N,)}
        needed = {"jumprelu": ("threshold",), "gated": ("b_gate", "r_mag")}.get(activation, ())
        for name, t in given.items():
            if t is None:
                if name in needed:
                    raise ValueError(f"a {activation} SAE needs a {name!r} tensor of shape {shapes[name]}")
                continue
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shapes[name]:
                raise ValueError(f"{name} must have shape {shapes[name]} (d_in={M}, d_sae={N}), got {tuple(getattr(t, 'shape', ()))}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        with torch.device("meta"):
            sae = cls(M, N, activation, k=k, apply_b_dec_to_input=apply_b_dec_to_input,
                      rescale_acts_by_decoder_norm=rescale_acts_by_decoder_norm, input_norm=input_norm, metadata=metadata)
        state = {"linear.weight": W_enc.T, "linear.bias": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        if activation == "jumprelu":
            # float64 log keeps exp(log(theta)) == theta after casting back, so gates match bit for bit
            state["log_threshold"] = threshold.double().clamp_min(0.0).log()
        if activation == "gated":
            state.update(b_gate=b_gate, r_mag=r_mag)
        sae.load_state_dict(state, assign=True)
        sae.matmul_form = matmul_form
        return sae

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu") -> "SAE":
        """Load an SAE saved by SAELens, dictionary_learning or :meth:`save` (format detected from the files)."""
        from .loading import load_sae

        return load_sae(path, dtype=dtype, device=device)

    def save(self, path: str | os.PathLike, **metadata: Any) -> Path:
        """Write the SAE in the current SAELens layout (``cfg.json`` + ``sae_weights.safetensors``) under ``path``.

        ``metadata`` (e.g. ``hook_name="blocks.3.hook_resid_pre"``, ``model_name="gpt2"``,
        ``context_size=128``, ``prepend_bos=True``) goes to ``cfg.json["metadata"]``.
        """
        from .saelens import write_saelens

        return write_saelens(self, path, **metadata)

    # ------------------------------------------------------------------ encoder
    @property
    def threshold(self) -> torch.Tensor:
        """JumpReLU thresholds ``theta >= 0`` (``N``)."""
        if self.activation != "jumprelu":
            raise AttributeError(f"a {self.activation} SAE has no threshold")
        return self.log_threshold.exp()

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.M:
            raise ValueError(f"x must have shape (n, {self.M}), got {tuple(getattr(x, 'shape', ()))}")
        return x.to(self.linear.weight.dtype)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """SAELens's run-time input normalisation (identity unless ``input_norm`` is per sample)."""
        if self.input_norm == "constant_norm_rescale":
            return x * (self.M**0.5 / x.norm(dim=-1, keepdim=True))
        if self.input_norm == "layer_norm":
            x = x - x.mean(dim=-1, keepdim=True)
            return x / (x.std(dim=-1, keepdim=True) + _LAYER_NORM_EPS)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What :attr:`linear` reads: the normalised input, minus ``b_dec`` if ``apply_b_dec_to_input``."""
        x = self.normalise(x.to(self.linear.weight.dtype))
        return x - self.b_dec if self.apply_b_dec_to_input else x

    def _affine(self, f: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``f W^T + b`` in this SAE's :attr:`matmul_form`."""
        return F.linear(f, W, b) if self.matmul_form == "linear" else f @ W.T + b

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-activations ``z`` the gate acts on, for a batch ``x`` (``n x M``).

        For ``gated`` SAEs, the magnitude path's pre-activation.
        """
        f = self.features(self._check_input(x))
        if self.activation == "gated":
            return self._gated(f)[1]
        z = self._affine(f, self.linear.weight, self.linear.bias)
        return z * self.W_dec.norm(dim=-1) if self.rescale_acts_by_decoder_norm else z

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """Apply the nonlinearity to pre-activations ``z`` (linear-gated architectures)."""
        if self.activation == "relu":
            return torch.relu(z)
        if self.activation == "topk":
            return topk_relu(z, self.k)
        if self.activation == "jumprelu":
            return jump_relu(z, self.log_threshold.exp().to(z.dtype), self.bandwidth)
        raise ValueError("a gated SAE gates on a second pre-activation; use encode(x)")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (SAELens's feature activations) of a batch ``x`` (``n x M``), ``n x N``."""
        if self.activation != "gated":
            return self.gate(self.preactivation(x))
        gate_pre, magnitude_pre = self._gated(self.features(self._check_input(x)))
        return (gate_pre > 0).to(magnitude_pre.dtype) * torch.relu(magnitude_pre)

    def _gated(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate and magnitude pre-activations of a gated SAE, in the arithmetic of the library it came from."""
        W, scale = self.linear.weight, self.r_mag.exp()
        if self.matmul_form == "linear":  # dictionary_learning's GatedAutoEncoder
            shared = F.linear(f, W)
            return shared + self.b_gate, scale * shared + self.linear.bias
        return f @ W.T + self.b_gate, f @ (W.T * scale) + self.linear.bias  # SAELens's GatedSAE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The codes (``encode``), so an SAE drops in wherever an encoder is expected."""
        return self.encode(x)

    # ------------------------------------------------------------------ decoder
    @property
    def dictionary(self) -> torch.Tensor:
        """``D`` (``M x N``, detached) with ``decode(s) = s D^T + b_dec``: ``W_dec^T``, unit-norm atoms if rescaled."""
        W = self.W_dec.detach()
        if self.rescale_acts_by_decoder_norm:
            W = W / W.norm(dim=-1, keepdim=True)
        return W.T

    def decode(self, s: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``s W_dec + b_dec`` of codes ``s`` (``n x N``), in the normalised input space."""
        if not isinstance(s, torch.Tensor) or s.ndim != 2 or s.shape[1] != self.N:
            raise ValueError(f"codes must have shape (n, {self.N}), got {tuple(getattr(s, 'shape', ()))}")
        s = s.to(self.W_dec.dtype)
        if self.rescale_acts_by_decoder_norm:
            s = s / self.W_dec.norm(dim=-1)
        return s @ self.W_dec + self.b_dec

    @torch.no_grad()
    def set_decoder(self, D: Any, b_dec: Any = None) -> "SAE":
        """Set the decoder from gapbound's ``M x N`` dictionary ``D`` (and bias ``b_dec``); returns ``self``.

        Use after training with a separate :class:`~gapbound.models.Dictionary`:
        ``sae.set_decoder(dictionary.weight)``.
        """
        if self.rescale_acts_by_decoder_norm:
            raise ValueError("set_decoder on a rescaled TopK SAE would change its codes; build it with from_weights")
        Dt = check_dictionary(D, rows=self.M, cols=self.N).detach()
        self.W_dec.data = Dt.T.to(self.W_dec.dtype, copy=True).contiguous()
        if b_dec is not None:
            b = as_tensor("b_dec", b_dec).detach().reshape(-1)
            if b.shape[0] != self.M or not torch.isfinite(b).all():
                raise ValueError(f"b_dec must be a finite vector of length M={self.M}, got shape {tuple(b.shape)}")
            self.b_dec.data = b.to(self.b_dec.dtype, copy=True)
        return self

    @torch.no_grad()
    def fold_input_normalisation(self, mean: Any = None, scale: float = 1.0) -> "SAE":
        """A copy that reads raw activations ``x`` where this SAE reads ``(x - mean) / scale``.

        Encoder and decoder absorb the centring and scaling, so the copy's codes on
        ``x`` equal this SAE's codes on ``(x - mean) / scale`` (times ``scale`` for a
        rescaled TopK SAE, whose atoms stay unit-norm) and its reconstruction is
        ``scale * x_hat + mean``: the form SAELens and the meter expect. For a dataset
        factor (SAELens ``expected_average_only_in``, inputs ``x * factor``) pass ``scale=1/factor``.
        """
        if self.input_norm not in ("none", *CALLER_SIDE_NORMS):
            raise ValueError(f"input_norm={self.input_norm!r} is applied per sample at run time and cannot be folded")
        c = check_float("scale", scale, minimum=0.0, strict_minimum=True)
        new = copy.deepcopy(self)
        dtype = new.linear.weight.dtype
        mu = torch.zeros(self.M, dtype=dtype) if mean is None else as_tensor("mean", mean, dtype=dtype).reshape(-1)
        if mu.shape[0] != self.M or not torch.isfinite(mu).all():
            raise ValueError(f"mean must be a finite vector of length M={self.M}, got shape {tuple(mu.shape)}")
        mu = mu.to(new.linear.weight.device)
        W = new.linear.weight.detach().clone()
        biases = [(new.linear.bias, W * new.r_mag.exp()[:, None] if self.activation == "gated" else W)]
        if self.activation == "gated":
            biases.append((new.b_gate, W))
        for bias, W_path in biases:
            shift = 0.0 if self.apply_b_dec_to_input else W_path @ mu / c
            bias.data = bias - shift
        new.linear.weight.data = W / c
        new.W_dec.data = new.W_dec * c
        new.b_dec.data = new.b_dec * c + mu
        new.input_norm = "none"
        return new
