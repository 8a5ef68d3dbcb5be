"""Explain-then-detect scoring: perfect on a one-token latent, chance on a random one, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gapbound.lm import autointerp as ai

V, W = 300, 32


def _corpus(n_windows: int, seed: int) -> np.ndarray:
    """Uniform random tokens, with the bigram (3, 5) planted in a tenth of the windows."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, size=(n_windows, W))
    rows = rng.random(n_windows) < 0.1
    at = rng.integers(0, W - 1, size=n_windows)
    tokens[rows, at[rows]], tokens[rows, at[rows] + 1] = 3, 5
    return tokens


def _codes(tokens: np.ndarray, seed: int) -> sp.csc_matrix:
    """Latent 0 fires exactly on token 7; latent 1 at random (~half the windows); latent 2 on the bigram (3, 5);
    latent 3 on tokens 11 or 12 with an amplitude; latent 4 never fires."""
    rng = np.random.default_rng(seed)
    flat = tokens.reshape(-1)
    prev = np.roll(tokens, 1, axis=1)
    prev[:, 0] = -1
    p = 1 - 0.5 ** (1 / W)
    cols = [
        (flat == 7) * 1.0,
        (rng.random(flat.size) < p) * rng.uniform(0.5, 2.0, flat.size),
        ((prev == 3) & (tokens == 5)).reshape(-1) * 2.0,
        np.isin(flat, [11, 12]) * rng.uniform(0.1, 3.0, flat.size),
        np.zeros(flat.size),
    ]
    return sp.csc_matrix(np.stack(cols, 1))


@pytest.fixture(scope="module")
def scored():
    explain, test = _corpus(6000, 0), _corpus(6000, 1)
    scores, counts = ai.score_latents(explain, _codes(explain, 2), test, _codes(test, 3), n_latents=10,
                                      min_activating=5, n_test=100, seed=0)
    return {s.latent: s for s in scores}, counts


def test_one_token_latent_is_detected_perfectly(scored):
    scores, _ = scored
    assert scores[0].f1 == 1.0 and scores[0].accuracy == 1.0 and scores[0].n_test == 200
    assert scores[0].explanation == "fires on '<7>'"
    assert scores[3].f1 == 1.0  # two tokens, amplitudes irrelevant
    assert scores[2].f1 == 1.0 and "'<3>' '<5>'" in scores[2].explanation  # the bigram, not token 5 alone


def test_random_latent_scores_at_chance(scored):
    scores, counts = scored
    s = scores[1]
    # uninformative detector on a balanced set: accuracy ~0.5 and F1 at most that of flagging everything (2/3)
    assert abs(s.accuracy - 0.5) < 0.12
    assert s.f1 < 2 / 3 + 0.05
    assert counts == {"n_latents": 5, "eligible": 4, "scored": 4}  # the dead latent is not eligible


def test_detection_scores_against_hand_counts():
    s = ai.detection_scores(np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 1, 0, 1], bool))
    assert s == pytest.approx({"f1": 2 * 2 / (2 * 2 + 1 + 1), "precision": 2 / 3, "recall": 2 / 3, "accuracy": 3 / 5})
    assert ai.detection_scores(np.zeros(4, bool), np.array([1, 1, 0, 0], bool))["f1"] == 0.0
    assert ai.detection_scores(np.ones(4, bool), np.array([1, 1, 0, 0], bool))["f1"] == pytest.approx(2 / 3)


def test_make_windows_layout():
    tokens = np.arange(2 * 10).reshape(2, 10)
    win = ai.make_windows(tokens, 4, positions=(1, 9))
    np.testing.assert_array_equal(win, [[1, 2, 3, 4], [5, 6, 7, 8], [11, 12, 13, 14], [15, 16, 17, 18]])
    with pytest.raises(ValueError, match="window must be <= 8"):
        ai.make_windows(tokens, 9, positions=(1, 9))
    with pytest.raises(ValueError, match="tokens must have shape"):
        ai.make_windows(np.arange(5), 2)


def test_bad_input_is_rejected():
    explain = _corpus(50, 0)
    codes = _codes(explain, 0)
    with pytest.raises(ValueError, match="one row per token"):
        ai.score_latents(explain, codes[:-1], explain, codes)
    with pytest.raises(ValueError, match="n_latents must be >= 1"):
        ai.score_latents(explain, codes, explain, codes, n_latents=0)
    with pytest.raises(ValueError, match="equal shapes"):
        ai.Windows(np.zeros((2, 3)), np.zeros((2, 4)))


class _FakeChat:
    """Stands in for an OpenAI-compatible endpoint: records prompts, answers from a script."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    def complete(self, messages, max_tokens=256):
        self.prompts.append(messages[-1]["content"])
        return self.replies.pop(0)


def test_llm_pair_speaks_the_chat_protocol_without_a_network():
    decode = lambda ids: [f"w{int(i)}" for i in ids]  # noqa: E731
    pos = ai.Windows(np.array([[1, 7, 2]]), np.array([[0.0, 1.5, 0.0]]))
    neg = ai.Windows(np.array([[4, 5, 6]]), np.zeros((1, 3)))
    chat = _FakeChat(["The token w7.", "[1, 0]", "[0]"])
    explanation = ai.LLMExplainer(chat, decode).explain(pos, neg)
    assert explanation.text == "The token w7." and "w1 <<w7>> w2" in chat.prompts[0]
    flags = ai.LLMDetector(chat, decode, batch=2).detect(explanation, np.array([[7, 1, 1], [2, 2, 2], [3, 3, 3]]))
    np.testing.assert_array_equal(flags, [True, False, False])
    assert "The token w7." in chat.prompts[1] and "w7 w1 w1" in chat.prompts[1]
    with pytest.raises(ValueError, match="JSON list of 2"):
        ai.parse_binary_list("yes, both", 2)
    assert ai.parse_binary_list("Sure: [1, 1]", 2) == [True, True]


def test_chat_client_reports_unreachable_endpoint():
    client = ai.ChatClient("http://127.0.0.1:9/v1", "m", timeout=2)  # port 9 (discard): refused locally
    with pytest.raises(ConnectionError, match="chat endpoint"):
        client.complete([{"role": "user", "content": "hi"}])
