"""Fuzzing the public API's inputs: every call returns a valid result or raises a clear ValueError/TypeError.

Arrays come in every dtype a user may hold (float16/32/64, integers, bool,
complex), with NaN/inf, wrong shapes and wrong types. Complex input must be
refused (never truncated to its real part); integer and half input must give
the same result as the explicitly cast float input (or be refused); a result
must be finite and of the right shape. Error messages are one line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gapbound
from gapbound.synthetic.data import SyntheticConfig
from gapbound.synthetic.methods import ExperimentConfig
from gapbound.synthetic.metrics import mcc
from gapbound.training import TrainConfig
from gapbound.utils.validation import as_tensor

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_, np.complex128])
ERRORS = (ValueError, TypeError)


def arrays(shape=None, elements=None):
    """Arrays of any dtype above; small integer-valued entries so every dtype can hold them, some NaN/inf."""
    shapes = shape if shape is not None else hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)
    values = elements or st.one_of(st.integers(-3, 3).map(float), st.sampled_from([0.5, -1.5, math.nan, math.inf]))

    def elements(dt):
        if np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.complexfloating):
            return values
        return st.booleans() if dt == np.bool_ else st.integers(-3, 3)

    return DTYPES.flatmap(lambda dt: hnp.arrays(dt, shapes, elements=elements(dt)))


def _one_line(err: Exception) -> None:
    assert str(err).strip() and "\n" not in str(err).strip(), repr(err)


def _call(f, *args, **kw):
    """``(result, None)`` or ``(None, error)`` for a clear error; anything else fails the test."""
    try:
        return f(*args, **kw), None
    except ERRORS as err:
        _one_line(err)
        return None, err


@FUZZ
@given(arrays())
def test_as_tensor_refuses_complex_and_casts_the_rest_explicitly(a):
    t, err = _call(as_tensor, "X", a)
    if np.issubdtype(a.dtype, np.complexfloating):
        assert isinstance(err, TypeError) and "complex" in str(err)
        return
    assert t is not None and t.is_floating_point() and t.dtype != torch.float16 and tuple(t.shape) == a.shape
    finite = np.isfinite(a.astype(np.float64))
    assert np.array_equal(t.double().numpy()[finite], a.astype(np.float64)[finite])


D0 = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))[0][:, :4].astype(np.float64)  # 6 x 4, unit columns


@FUZZ
@given(X=arrays(), lam=st.sampled_from([0.0, 0.1, 1.0, -0.1, math.nan, math.inf]),
       method=st.sampled_from(["fista", "ista", "bogus"]))
def test_solve(X, lam, method):
    res, err = _call(gapbound.solve, D0, X, lam, method=method, max_iter=50)
    if err is not None:
        return
    assert not np.issubdtype(X.dtype, np.complexfloating), "complex input was not refused"
    assert X.ndim == 2 and X.shape[1] == D0.shape[0] and lam >= 0 and method in ("fista", "ista")
    assert tuple(res.codes.shape) == (X.shape[0], D0.shape[1])
    assert torch.isfinite(res.codes).all() and (res.codes >= 0).all() and torch.isfinite(res.duality_gap).all()
    if not np.issubdtype(X.dtype, np.floating) or X.dtype == np.float16:  # cast explicitly: the same as float input
        ref = gapbound.solve(D0, X.astype(np.float64), lam, method=method, max_iter=50)
        assert torch.allclose(res.codes.double(), ref.codes.double(), atol=1e-4)


@FUZZ
@given(D=arrays(shape=st.sampled_from([(6, 4), (4, 6), (6,), (0, 3), (3, 0)])))
def test_solve_dictionary(D):
    X = np.ones((2, D.shape[0] if D.ndim else 1))
    res, err = _call(gapbound.solve, D, X, 0.1, max_iter=50)
    if err is None:
        assert not np.issubdtype(D.dtype, np.complexfloating), "complex dictionary was not refused"
        assert torch.isfinite(res.codes).all() and torch.isfinite(res.duality_gap).all()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(D=arrays(shape=st.sampled_from([(3, 5), (4, 6), (5,), (0, 4)])),
       K=st.sampled_from([-1, 0, 1, 2, 3, 2.5, "2", True, 10]))
def test_certify(D, K):
    res, err = _call(gapbound.certify, D, K)
    if err is None:
        assert not np.issubdtype(D.dtype, np.complexfloating), "complex dictionary was not refused"
        assert isinstance(K, int) and not isinstance(K, bool) and 1 <= K <= D.shape[1]
        assert np.isfinite(np.asarray(D, dtype=np.float64)).all()


@FUZZ
@given(S=arrays(shape=st.sampled_from([(8, 3), (8, 4), (1, 3), (0, 3), (8,)])))
def test_mcc(S):
    truth = np.abs(np.random.default_rng(1).normal(size=(8, 3)))
    value, err = _call(mcc, truth, S)
    if err is None:
        assert not np.issubdtype(S.dtype, np.complexfloating), "complex codes were not refused"
        assert math.isfinite(value) and -1.0 <= value <= 1.0


@FUZZ
@given(M=st.sampled_from([1, 4, 0, -1, 2.0, "4"]), N=st.sampled_from([1, 6, 0, 3.5]),
       activation=st.sampled_from(["relu", "topk", "jumprelu", "gelu"]), k=st.sampled_from([None, 1, 2, 2.5, 0, 99, "2"]))
def test_sae_configuration(M, N, activation, k):
    sae, err = _call(gapbound.SAE, M, N, activation=activation, k=k)
    if err is None:
        assert isinstance(M, int) and isinstance(N, int) and M >= 1 and N >= 1
        assert activation in ("relu", "topk", "jumprelu")
        if activation == "topk":
            assert isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= N, f"k={k!r} was accepted"
        codes = sae.encode(torch.ones(2, M))
        assert tuple(codes.shape) == (2, N) and torch.isfinite(codes).all()


@FUZZ
@given(field=st.sampled_from(["setting", "methods", "batch_size", "ito_lam", "ito_max_iter", "ito_tol", "ito_polish",
                              "curve_points", "device", "data", "train"]),
       value=st.sampled_from([None, 0, 1, -1, 2.5, math.nan, "x", "SAE", ("SAE", "SAE"), ("MLP-4",), True, [],
                              SyntheticConfig(), TrainConfig(steps=1)]))
def test_experiment_config_value_types(field, value):
    cfg, err = _call(ExperimentConfig, **{field: value})
    if err is None:  # only values of the documented type and range are accepted
        ok = {"setting": lambda v: v in ("known_z", "known_d", "unknown"),
              "methods": lambda v: isinstance(v, tuple) and len(set(v)) == len(v) and v,
              "batch_size": lambda v: v is None or (type(v) is int and v >= 1),
              "ito_lam": lambda v: type(v) in (int, float) and math.isfinite(v) and v >= 0,
              "ito_max_iter": lambda v: type(v) is int and v >= 1,
              "ito_tol": lambda v: v is None or (type(v) in (int, float) and math.isfinite(v) and v >= 0),
              "ito_polish": lambda v: type(v) is bool,
              "curve_points": lambda v: type(v) is int and v >= 1,
              "device": lambda v: v in ("cpu", "auto"),
              "data": lambda v: isinstance(v, SyntheticConfig),
              "train": lambda v: isinstance(v, TrainConfig)}[field]
        assert ok(value), f"{field}={value!r} was accepted"


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(X=arrays(shape=st.sampled_from([(5, 6), (5, 4), (0, 6), (6,)])))
def test_measure_gap(X):
    sae = gapbound.SAE(6, 4)
    report, err = _call(gapbound.measure_gap, sae, X=X)
    if err is None:
        assert not np.issubdtype(X.dtype, np.complexfloating), "complex activations were not refused"
        assert X.ndim == 2 and X.shape == (5, 6)
