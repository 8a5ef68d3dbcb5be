"""Automated interpretability: explain a latent, then detect its activations from the explanation.

The paper scores each latent by *explain-then-detect*: an explainer sees the
latent's top-activating text and writes an explanation; a detector, given only
the explanation, predicts which held-out examples activate the latent; the
score is the F1 of those predictions. This module implements that protocol
with two interchangeable explainer/detector pairs.

**Examples.** The scored contexts are cut into non-overlapping *windows* of
``window`` tokens (32 by default). A window is *activating* for a latent if the
latent is above ``threshold`` (0) at some token of it. Windows are split in
two disjoint sets: an *explain* split and a *test* split (in
:mod:`simulations.gpt2`, different contexts of held-out text that no encoder
was trained on).

**Default, no LLM** (:class:`TokenExplainer`, :class:`TokenDetector`). The
explainer sees the ``n_explain`` highest-activating explain windows and as many
random non-activating ones. Its candidate patterns are the tokens, and the
(previous token, token) bigrams, found *at the positions where the latent
fires* in those top windows. It greedily adds the pattern that most raises the
F1 of "a window is activating iff it contains one of the patterns" on the
windows it saw, while the F1 rises, up to ``max_patterns`` patterns that each
cover at least ``min_support`` top windows. The explanation is that pattern
set (rendered as text with the tokenizer). The detector flags a window iff it
contains one of the patterns.

**Score.** The test set is balanced: ``n`` activating windows drawn uniformly
from all activating test windows (not just the top ones, so the whole
activation range is scored) and ``n`` random non-activating test windows, with
``n = min(n_test, available)``. F1, precision, recall and accuracy are
computed there.

**What the default measures.** How well a latent's firing at window level can
be predicted from a small set of literal tokens or token pairs learned from
its top activations: *token-level selectivity*. It cannot credit latents that
track a concept expressed by many different tokens, a syntactic position, or
something longer than a bigram, which an LLM explainer can; so it is a
conservative, fully reproducible proxy, not the paper's LLM score. On a
balanced set an uninformative detector has accuracy 0.5 and F1 between 0 (it
flags nothing) and 2/3 (it flags everything), so F1 should be read together
with accuracy.

**LLM pair** (:class:`LLMExplainer`, :class:`LLMDetector`): the same interface
over any OpenAI-compatible chat endpoint (:class:`ChatClient`), configured
by URL, model name and an API-key environment variable. Never called in tests.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import scipy.sparse as sp

from ..utils.validation import check_float, check_int

__all__ = [
    "Windows",
    "Explanation",
    "LatentScore",
    "Explainer",
    "Detector",
    "TokenExplainer",
    "TokenDetector",
    "ChatClient",
    "LLMExplainer",
    "LLMDetector",
    "make_windows",
    "detection_scores",
    "score_latent",
    "score_latents",
]

Decode = Callable[[Sequence[int]], list[str]]
"""Maps token ids to their display strings (e.g. ``tokenizer.convert_ids_to_tokens``)."""


def _default_decode(ids: Sequence[int]) -> list[str]:
    return [f"<{int(i)}>" for i in ids]


# ---------------------------------------------------------------- data layout
@dataclass(frozen=True)
class Windows:
    """Token windows and one latent's per-token activations on them.

    Attributes
    ----------
    tokens : np.ndarray
        ``(n, W)`` integer token ids.
    acts : np.ndarray
        ``(n, W)`` activations of the latent at every token.
    """

    tokens: np.ndarray
    acts: np.ndarray

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2 or self.tokens.shape != self.acts.shape:
            raise ValueError(f"tokens and acts must be 2-D with equal shapes, got {self.tokens.shape} and {self.acts.shape}")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def subset(self, rows: np.ndarray) -> "Windows":
        return Windows(self.tokens[rows], self.acts[rows])


def make_windows(tokens: np.ndarray, window: int, positions: tuple[int, int] | None = None) -> np.ndarray:
    """Cut ``(n_contexts, L)`` tokens into ``(n_contexts * (span // window), window)`` windows.

    Only positions in ``positions = (lo, hi)`` are used (all by default, e.g.
    ``(1, L - 1)`` drops a masked model's ``[CLS]``/``[SEP]``); the rest of the
    span that does not fill a whole window is dropped at the end of each
    context. Flattening the result row-major gives the token order in which
    codes must be supplied to :func:`score_latents`.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (n_contexts, L), got {tokens.shape}")
    lo, hi = positions if positions is not None else (0, tokens.shape[1])
    window = check_int("window", window, minimum=1, maximum=hi - lo)
    per = (hi - lo) // window
    return tokens[:, lo:lo + per * window].reshape(-1, window)


@dataclass(frozen=True)
class Explanation:
    """An explanation of one latent.

    Attributes
    ----------
    text : str
        Human-readable explanation.
    patterns : tuple of tuple of int
        Token n-grams (token ids) for :class:`TokenDetector`; empty for LLM explanations.
    """

    text: str
    patterns: tuple[tuple[int, ...], ...] = ()


class Explainer(Protocol):
    """Makes an explanation from activating and non-activating windows."""

    def explain(self, positive: Windows, negative: Windows) -> Explanation: ...


class Detector(Protocol):
    """Predicts, from an explanation alone, which windows activate the latent."""

    def detect(self, explanation: Explanation, tokens: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------ token explainer
def _contains(tokens: np.ndarray, pattern: Sequence[int]) -> np.ndarray:
    """Which rows of ``tokens`` contain the contiguous n-gram ``pattern``."""
    n = len(pattern)
    if n > tokens.shape[1]:
        return np.zeros(tokens.shape[0], dtype=bool)
    hit = np.ones((tokens.shape[0], tokens.shape[1] - n + 1), dtype=bool)
    for k, t in enumerate(pattern):
        hit &= tokens[:, k:tokens.shape[1] - n + 1 + k] == t
    return hit.any(1)


def _f1(tp: float, fp: float, fn: float) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


@dataclass
class TokenDetector:
    """Flags a window iff it contains one of the explanation's token patterns."""

    def detect(self, explanation: Explanation, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        flagged = np.zeros(tokens.shape[0], dtype=bool)
        for pattern in explanation.patterns:
            flagged |= _contains(tokens, pattern)
        return flagged


@dataclass
class TokenExplainer:
    """Explains a latent by the tokens/bigrams at which it fires in its top windows (see module docstring).

    Parameters
    ----------
    max_patterns : int
        Most patterns in an explanation.
    min_support : int
        A pattern must occur at a firing position in at least this many of the
        activating windows the explainer sees.
    bigrams : bool
        Also consider (previous token, token) pairs.
    decode : callable
        Token ids -> display strings, for the explanation's text.
    threshold : float
        Activation above which the latent counts as firing.
    """

    max_patterns: int = 10
    min_support: int = 2
    bigrams: bool = True
    decode: Decode = field(default=_default_decode)
    threshold: float = 0.0

    def _candidates(self, positive: Windows) -> list[tuple[int, ...]]:
        rows, cols = np.nonzero(positive.acts > self.threshold)
        support: dict[tuple[int, ...], set[int]] = {}
        toks = positive.tokens
        for r, c in zip(rows.tolist(), cols.tolist()):
            support.setdefault((int(toks[r, c]),), set()).add(r)
            if self.bigrams and c > 0:
                support.setdefault((int(toks[r, c - 1]), int(toks[r, c])), set()).add(r)
        return [p for p, s in support.items() if len(s) >= self.min_support]

    def explain(self, positive: Windows, negative: Windows) -> Explanation:
        candidates = self._candidates(positive)
        if not candidates:
            return Explanation("no token recurs at the latent's firing positions", ())
        pos_hit = np.stack([_contains(positive.tokens, p) for p in candidates])  # (n_cand, n_pos)
        neg_hit = np.stack([_contains(negative.tokens, p) for p in candidates])
        n_pos = len(positive)
        covered_pos = np.zeros(n_pos, dtype=bool)
        covered_neg = np.zeros(len(negative), dtype=bool)
        chosen: list[int] = []
        best = 0.0
        for _ in range(self.max_patterns):
            tp = (pos_hit | covered_pos).sum(1)
            fp = (neg_hit | covered_neg).sum(1)
            f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (n_pos - tp)), 0.0)
            f1[chosen] = -1.0
            # ties go to the shorter pattern, then the earlier candidate (deterministic)
            order = np.lexsort((np.arange(len(candidates)), [len(p) for p in candidates], -f1))
            k = int(order[0])
            if f1[k] <= best:
                break
            best = float(f1[k])
            chosen.append(k)
            covered_pos |= pos_hit[k]
            covered_neg |= neg_hit[k]
        patterns = tuple(candidates[k] for k in chosen)
        if not patterns:
            return Explanation("no token pattern separates activating from non-activating windows", ())
        shown = [" ".join(repr(t) for t in self.decode(list(p))) for p in patterns]
        return Explanation("fires on " + ", ".join(shown), patterns)


# ---------------------------------------------------------------- LLM pair
@dataclass
class ChatClient:
    """Minimal client of an OpenAI-compatible ``/chat/completions`` endpoint (standard library only).

    Parameters
    ----------
    base_url : str
        E.g. ``"http://localhost:8000/v1"`` or ``"https://api.openai.com/v1"``.
    model : str
        Model name the endpoint serves.
    api_key_env : str
        Environment variable holding the API key (may be unset for local servers).
    timeout : float
        Seconds per request.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0

    def complete(self, messages: list[dict[str, str]], max_tokens: int = 256) -> str:
        """Send a chat request; return the first choice's message content."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": max_tokens})
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions", body.encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = json.loads(resp.read().decode())
        except (urllib.error.URLError, TimeoutError) as err:
            raise ConnectionError(f"chat endpoint {self.base_url} failed: {err}") from err
        try:
            return str(payload["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"chat endpoint {self.base_url} returned an unexpected payload: {str(payload)[:300]}") from err


def _render(tokens: Sequence[int], acts: Sequence[float] | None, decode: Decode, threshold: float) -> str:
    """Window text; with ``acts``, firing tokens are marked ``<<like this>>``."""
    words = decode(list(tokens))
    if acts is None:
        return " ".join(words)
    return " ".join(f"<<{w}>>" if a > threshold else w for w, a in zip(words, acts))


@dataclass
class LLMExplainer:
    """Asks a chat model for a one-sentence explanation of the latent's top windows (firing tokens marked)."""

    client: Any
    decode: Decode = field(default=_default_decode)
    threshold: float = 0.0

    def explain(self, positive: Windows, negative: Windows) -> Explanation:
        examples = "\n".join(
            f"{i + 1}. {_render(t, a, self.decode, self.threshold)}" for i, (t, a) in enumerate(zip(positive.tokens, positive.acts))
        )
        prompt = (
            "You are interpreting one latent of a sparse autoencoder trained on a language model. Below are text "
            "snippets where the latent is active; tokens where it fires are marked <<like this>>.\n\n"
            f"{examples}\n\nIn one short sentence, say what the latent detects. Reply with the explanation only."
        )
        text = self.client.complete([{"role": "user", "content": prompt}], max_tokens=100).strip()
        if not text:
            raise ValueError("the chat model returned an empty explanation")
        return Explanation(text)


@dataclass
class LLMDetector:
    """Asks a chat model, given only the explanation, which windows activate the latent (in batches)."""

    client: Any
    decode: Decode = field(default=_default_decode)
    batch: int = 10

    def detect(self, explanation: Explanation, tokens: np.ndarray) -> np.ndarray:
        out: list[bool] = []
        for start in range(0, len(tokens), self.batch):
            chunk = tokens[start:start + self.batch]
            listing = "\n".join(f"{i + 1}. {_render(t, None, self.decode, 0.0)}" for i, t in enumerate(chunk))
            prompt = (
                f"A latent of a language-model sparse autoencoder is explained as: \"{explanation.text}\".\n"
                f"For each numbered snippet below, decide whether the latent would be active in it.\n\n{listing}\n\n"
                f"Reply with a JSON list of {len(chunk)} integers (1 = active, 0 = not), nothing else."
            )
            out.extend(parse_binary_list(self.client.complete([{"role": "user", "content": prompt}]), len(chunk)))
        return np.asarray(out, dtype=bool)


def parse_binary_list(reply: str, n: int) -> list[bool]:
    """Parse a chat reply holding a JSON list of ``n`` 0/1 values."""
    match = re.search(r"\[[^\[\]]*\]", reply)
    try:
        values = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or len(values) != n or any(v not in (0, 1, True, False) for v in values):
        raise ValueError(f"expected a JSON list of {n} zeros/ones from the chat model, got {reply[:200]!r}")
    return [bool(v) for v in values]


# ------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class LatentScore:
    """Detection scores of one latent on its balanced test set."""

    latent: int
    f1: float
    precision: float
    recall: float
    accuracy: float
    n_test: int
    explanation: str


def detection_scores(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """F1, precision, recall and accuracy of boolean predictions."""
    predicted, actual = np.asarray(predicted, dtype=bool), np.asarray(actual, dtype=bool)
    if predicted.shape != actual.shape:
        raise ValueError(f"predicted and actual must have the same shape, got {predicted.shape} and {actual.shape}")
    tp = float((predicted & actual).sum())
    fp = float((predicted & ~actual).sum())
    fn = float((~predicted & actual).sum())
    return {
        "f1": _f1(tp, fp, fn),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "accuracy": float((predicted == actual).mean()) if actual.size else float("nan"),
    }


def score_latent(
    explain: Windows,
    test: Windows,
    explainer: Explainer,
    detector: Detector,
    rng: np.random.Generator,
    n_explain: int = 50,
    n_test: int = 50,
    threshold: float = 0.0,
    latent: int = -1,
) -> LatentScore | None:
    """Explain one latent on ``explain`` and score detection on a balanced sample of ``test``.

    Returns None when either split lacks an activating or a non-activating window.
    """
    n_explain = check_int("n_explain", n_explain, minimum=1)
    n_test = check_int("n_test", n_test, minimum=1)
    peak_e, peak_t = explain.acts.max(1), test.acts.max(1)
    pos_e, neg_e = np.flatnonzero(peak_e > threshold), np.flatnonzero(peak_e <= threshold)
    pos_t, neg_t = np.flatnonzero(peak_t > threshold), np.flatnonzero(peak_t <= threshold)
    if min(len(pos_e), len(neg_e), len(pos_t), len(neg_t)) == 0:
        return None
    top = pos_e[np.argsort(-peak_e[pos_e], kind="stable")[:n_explain]]
    neg = rng.choice(neg_e, size=min(len(top), len(neg_e)), replace=False)
    explanation = explainer.explain(explain.subset(top), explain.subset(neg))
    n = min(n_test, len(pos_t), len(neg_t))
    rows = np.concatenate([rng.choice(pos_t, n, replace=False), rng.choice(neg_t, n, replace=False)])
    actual = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    s = detection_scores(detector.detect(explanation, test.tokens[rows]), actual)
    return LatentScore(latent, s["f1"], s["precision"], s["recall"], s["accuracy"], 2 * n, explanation.text)


def score_latents(
    tokens_explain: np.ndarray,
    codes_explain: sp.spmatrix,
    tokens_test: np.ndarray,
    codes_test: sp.spmatrix,
    n_latents: int = 200,
    explainer: Explainer | None = None,
    detector: Detector | None = None,
    n_explain: int = 50,
    n_test: int = 50,
    min_activating: int = 5,
    threshold: float = 0.0,
    seed: int = 0,
) -> tuple[list[LatentScore], dict[str, int]]:
    """Score a random sample of latents by explain-then-detect.

    Parameters
    ----------
    tokens_explain, tokens_test : np.ndarray
        ``(n_windows, W)`` token windows of the two splits (see :func:`make_windows`).
    codes_explain, codes_test : scipy.sparse matrix
        ``(n_windows * W, N)`` codes of every token, rows in window-major order.
    n_latents : int
        Latents to score, drawn uniformly (seeded) from the *eligible* ones:
        those with at least ``min_activating`` activating and
        ``min_activating`` non-activating windows in both splits.
    explainer, detector
        Defaults: :class:`TokenExplainer`, :class:`TokenDetector`.
    n_explain, n_test, threshold
        See :func:`score_latent`.
    seed : int
        Seed of the latent sample and the example draws.

    Returns
    -------
    scores : list of LatentScore
    counts : dict
        ``eligible`` and ``scored`` latent counts and ``n_latents`` in the code space.
    """
    n_latents = check_int("n_latents", n_latents, minimum=1)
    min_activating = check_int("min_activating", min_activating, minimum=1)
    check_float("threshold", threshold)
    explainer = explainer or TokenExplainer(threshold=threshold)
    detector = detector or TokenDetector()
    splits = []
    for name, tokens, codes in (("explain", tokens_explain, codes_explain), ("test", tokens_test, codes_test)):
        tokens = np.asarray(tokens)
        codes = sp.csc_matrix(codes)
        if tokens.ndim != 2 or codes.shape[0] != tokens.size:
            raise ValueError(f"codes_{name} must have one row per token of tokens_{name} ({tokens.size}), got {codes.shape}")
        splits.append((tokens, codes))
    N = splits[0][1].shape[1]
    if splits[1][1].shape[1] != N:
        raise ValueError(f"codes_explain and codes_test have different latent counts ({N}, {splits[1][1].shape[1]})")

    def active_windows(tokens: np.ndarray, codes: sp.csc_matrix) -> np.ndarray:
        W = tokens.shape[1]
        rows = (codes > threshold).tocoo()
        hit = sp.csr_matrix((np.ones(rows.nnz, bool), (rows.row // W, rows.col)), shape=(tokens.shape[0], N))
        return np.asarray((hit > 0).sum(0)).ravel()

    eligible = np.ones(N, dtype=bool)
    for tokens, codes in splits:
        n_act = active_windows(tokens, codes)
        eligible &= (n_act >= min_activating) & (tokens.shape[0] - n_act >= min_activating)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(eligible)
    chosen = np.sort(rng.choice(candidates, size=min(n_latents, len(candidates)), replace=False))
    scores = []
    for j in chosen:
        views = [Windows(t, c[:, int(j)].toarray().reshape(t.shape)) for t, c in splits]
        s = score_latent(views[0], views[1], explainer, detector, np.random.default_rng([seed, int(j)]),
                         n_explain, n_test, threshold, latent=int(j))
        if s is not None:
            scores.append(s)
    return scores, {"n_latents": int(N), "eligible": int(eligible.sum()), "scored": len(scores)}
