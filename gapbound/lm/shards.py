"""Resumable on-disk store of language-model activations, with the tokens they came from.

Layout of a store directory::

    manifest.json              written atomically (tmp file + os.replace) after every shard
    shard_00000.acts.npy       float16/float32, shape (n_contexts, context_length, d_model)
    shard_00000.tokens.npy     int32, shape (n_contexts, context_length)
    ...

A shard exists for readers only once the manifest lists it, and the manifest
is rewritten only after both of its files are complete on disk. An
interruption therefore leaves at worst orphan files for the next shard index,
which the resumed harvest overwrites: nothing is duplicated or lost. Every
shard carries a BLAKE2b checksum of its arrays; a truncated file or a bad
header is caught whenever a shard is opened, flipped bytes by
:meth:`ShardStore.verify` (or ``verify=True`` when loading).

Tokens are kept next to the activations because interpretability scoring
(:mod:`gapbound.lm.autointerp`) explains latents from the text that drives them.

Training reads the store as a stream of shuffled minibatches
(:class:`ActivationStream`), holding at most two shards in memory at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..utils.io import atomic_write, atomic_write_json
from ..utils.validation import check_int

__all__ = [
    "ShardCorruptedError",
    "ShardStore",
    "ActivationStream",
    "MANIFEST_NAME",
]

MANIFEST_NAME = "manifest.json"
_FORMAT = "gapbound-activation-shards"
_VERSION = 1
_ACT_DTYPES = ("float16", "float32")


class ShardCorruptedError(ValueError):
    """A shard's files are missing, truncated, malformed or fail their checksum."""


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    # Through a file object: np.save would append ".npy" to the temporary name.
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def _checksum(acts: np.ndarray, tokens: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(acts).view(np.uint8).reshape(-1))
    h.update(np.ascontiguousarray(tokens).view(np.uint8).reshape(-1))
    return "blake2b:" + h.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """One finished shard as recorded in the manifest."""

    name: str
    n_contexts: int
    checksum: str

    def paths(self, root: Path) -> tuple[Path, Path]:
        return root / f"{self.name}.acts.npy", root / f"{self.name}.tokens.npy"


class ShardStore:
    """A directory of activation/token shards described by ``manifest.json``.

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create`; do not call
    the constructor directly.

    Attributes
    ----------
    root : Path
        The store directory.
    fingerprint : dict
        What was harvested (model, layer, site, text, context length, dtype). A
        store can only be resumed by a harvest with the same fingerprint.
    d_model, context_length : int
        Activation width and tokens per context.
    dtype : str
        On-disk activation dtype (``"float16"`` or ``"float32"``).
    positions : tuple[int, int]
        Half-open range of positions within a context that hold content tokens
        (e.g. ``(1, L - 1)`` for a masked LM whose contexts are wrapped in
        ``[CLS] ... [SEP]``); readers use only these for training.
    meta : dict
        Free-form information (tokenizer, model type) for downstream tools.
    complete : bool
        True once the text source was exhausted.
    """

    def __init__(self, root: Path, manifest: dict) -> None:
        self.root = root
        self._manifest = manifest

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        fingerprint: dict,
        d_model: int,
        context_length: int,
        dtype: str = "float32",
        positions: tuple[int, int] | None = None,
        meta: dict | None = None,
    ) -> "ShardStore":
        """Create an empty store at ``root`` (the directory may exist but must not hold a manifest)."""
        root = Path(root)
        d_model = check_int("d_model", d_model, minimum=1)
        context_length = check_int("context_length", context_length, minimum=1)
        if dtype not in _ACT_DTYPES:
            raise ValueError(f"dtype must be one of {_ACT_DTYPES}, got {dtype!r}")
        lo, hi = positions if positions is not None else (0, context_length)
        if not 0 <= lo < hi <= context_length:
            raise ValueError(f"positions must satisfy 0 <= lo < hi <= context_length={context_length}, got {(lo, hi)}")
        if (root / MANIFEST_NAME).exists():
            raise FileExistsError(f"a shard store already exists at {root}; open it with ShardStore.open")
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": _FORMAT,
            "version": _VERSION,
            "fingerprint": _jsonable(fingerprint),
            "d_model": d_model,
            "context_length": context_length,
            "dtype": dtype,
            "token_dtype": "int32",
            "positions": [int(lo), int(hi)],
            "meta": _jsonable(meta or {}),
            "shards": [],
            "complete": False,
        }
        atomic_write_json(root / MANIFEST_NAME, manifest)
        return cls(root, manifest)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ShardStore":
        """Open an existing store, checking that the manifest is well formed."""
        root = Path(root)
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no shard store at {root} (missing {MANIFEST_NAME}); harvest activations first")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ShardCorruptedError(f"{path} is not valid JSON ({err}); the store cannot be read") from err
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise ShardCorruptedError(f"{path} is not a gapbound activation-shard manifest")
        if manifest.get("version") != _VERSION:
            raise ShardCorruptedError(f"{path} has format version {manifest.get('version')}, expected {_VERSION}")
        return cls(root, manifest)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, fingerprint: dict, **kwargs: Any) -> "ShardStore":
        """Open the store at ``root`` if its fingerprint matches, else create it.

        Raises
        ------
        ValueError
            If a store exists at ``root`` with a different fingerprint (resuming
            it would mix activations of different harvests).
        """
        root = Path(root)
        if not (root / MANIFEST_NAME).exists():
            return cls.create(root, fingerprint, **kwargs)
        store = cls.open(root)
        want = _jsonable(fingerprint)
        if store.fingerprint != want:
            diff = {k: (store.fingerprint.get(k), want.get(k)) for k in set(want) | set(store.fingerprint)
                    if store.fingerprint.get(k) != want.get(k)}
            raise ValueError(
                f"the shard store at {root} was harvested with different settings {diff} (stored, requested); "
                "use another directory or delete this one"
            )
        for key in ("d_model", "context_length", "dtype"):
            if key in kwargs and kwargs[key] != store._manifest[key]:
                raise ValueError(f"the shard store at {root} has {key}={store._manifest[key]}, requested {kwargs[key]}")
        return store

    # ---------------------------------------------------------------- properties
    @property
    def fingerprint(self) -> dict:
        return self._manifest["fingerprint"]

    @property
    def d_model(self) -> int:
        return int(self._manifest["d_model"])

    @property
    def context_length(self) -> int:
        return int(self._manifest["context_length"])

    @property
    def dtype(self) -> str:
        return str(self._manifest["dtype"])

    @property
    def positions(self) -> tuple[int, int]:
        lo, hi = self._manifest["positions"]
        return int(lo), int(hi)

    @property
    def meta(self) -> dict:
        return self._manifest["meta"]

    @property
    def complete(self) -> bool:
        return bool(self._manifest["complete"])

    @property
    def shards(self) -> list[ShardInfo]:
        return [ShardInfo(s["name"], int(s["n_contexts"]), s["checksum"]) for s in self._manifest["shards"]]

    @property
    def n_shards(self) -> int:
        return len(self._manifest["shards"])

    @property
    def n_contexts(self) -> int:
        return sum(int(s["n_contexts"]) for s in self._manifest["shards"])

    def n_vectors(self, shards: Sequence[int] | None = None) -> int:
        """Number of training vectors (contexts x content positions) in ``shards`` (all by default)."""
        lo, hi = self.positions
        infos = self.shards
        ids = range(len(infos)) if shards is None else shards
        return sum(infos[i].n_contexts for i in ids) * (hi - lo)

    # ------------------------------------------------------------------- writing
    def append_shard(self, acts: np.ndarray, tokens: np.ndarray) -> ShardInfo:
        """Write one shard and record it in the manifest (atomically, files first).

        Parameters
        ----------
        acts : np.ndarray
            ``(n, context_length, d_model)`` activations; cast to the store dtype.
        tokens : np.ndarray
            ``(n, context_length)`` integer token ids.
        """
        if self.complete:
            raise ValueError(f"the shard store at {self.root} is complete; it cannot take more shards")
        acts = np.asarray(acts)
        tokens = np.asarray(tokens)
        L, d = self.context_length, self.d_model
        if acts.ndim != 3 or acts.shape[1:] != (L, d) or acts.shape[0] < 1:
            raise ValueError(f"acts must have shape (n >= 1, {L}, {d}), got {acts.shape}")
        if tokens.shape != acts.shape[:2]:
            raise ValueError(f"tokens must have shape {acts.shape[:2]}, got {tokens.shape}")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
        acts = np.ascontiguousarray(acts, dtype=self.dtype)
        if not np.isfinite(acts).all():
            raise ValueError("acts contain NaN or infinite values; refusing to store them")
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        info = ShardInfo(f"shard_{self.n_shards:05d}", int(acts.shape[0]), _checksum(acts, tokens))
        acts_path, tok_path = info.paths(self.root)
        _save_npy_atomic(acts_path, acts)
        _save_npy_atomic(tok_path, tokens)
        self._manifest["shards"].append({"name": info.name, "n_contexts": info.n_contexts, "checksum": info.checksum})
        atomic_write_json(self.root / MANIFEST_NAME, self._manifest)
        return info

    def mark_complete(self) -> None:
        """Record that the text source was exhausted (no more shards will come)."""
        self._manifest["complete"] = True
        atomic_write_json(self.root / MANIFEST_NAME, self._manifest)

    def truncate(self, n_shards: int) -> None:
        """Forget every shard from index ``n_shards`` on (their files are deleted) so a harvest can redo them."""
        n_shards = check_int("n_shards", n_shards, minimum=0, maximum=self.n_shards)
        dropped = self.shards[n_shards:]
        self._manifest["shards"] = self._manifest["shards"][:n_shards]
        self._manifest["complete"] = False
        atomic_write_json(self.root / MANIFEST_NAME, self._manifest)
        for info in dropped:
            for p in info.paths(self.root):
                p.unlink(missing_ok=True)

    # ------------------------------------------------------------------- reading
    def load_shard(self, index: int, verify: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Memory-map shard ``index``: ``(acts, tokens)`` with shapes ``(n, L, d)`` and ``(n, L)``.

        Parameters
        ----------
        index : int
            Shard index in ``[0, n_shards)``.
        verify : bool
            Also recompute the checksum (reads the whole shard once).

        Raises
        ------
        ShardCorruptedError
            If a file is missing, truncated, has the wrong shape/dtype, or (with
            ``verify``) fails its checksum. The message says how to repair.
        """
        index = check_int("index", index, minimum=0, maximum=self.n_shards - 1)
        info = self.shards[index]
        acts_path, tok_path = info.paths(self.root)
        expect = {
            acts_path: ((info.n_contexts, self.context_length, self.d_model), np.dtype(self.dtype)),
            tok_path: ((info.n_contexts, self.context_length), np.dtype(np.int32)),
        }
        arrays = []
        for path, (shape, dtype) in expect.items():
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:
                raise self._corrupted(index, f"{path.name} cannot be read ({err})") from err
            if arr.shape != shape or arr.dtype != dtype:
                raise self._corrupted(index, f"{path.name} has shape {arr.shape} {arr.dtype}, expected {shape} {dtype}")
            arrays.append(arr)
        acts, tokens = arrays
        if verify and _checksum(acts, tokens) != info.checksum:
            raise self._corrupted(index, "checksum mismatch (the data were modified after writing)")
        return acts, tokens

    def _corrupted(self, index: int, reason: str) -> ShardCorruptedError:
        return ShardCorruptedError(
            f"shard {index} ({self.shards[index].name}) of the store at {self.root} is corrupted: {reason}. "
            f"Call ShardStore.open(root).repair() (or pass --repair to the harvesting CLI) to drop it and every later "
            "shard, then resume the harvest to recreate them."
        )

    def verify(self) -> None:
        """Check every shard's files and checksum; raise :class:`ShardCorruptedError` at the first bad one."""
        for i in range(self.n_shards):
            self.load_shard(i, verify=True)

    def repair(self) -> int:
        """Drop the first corrupted shard and all later ones; return how many shards were dropped."""
        for i in range(self.n_shards):
            try:
                self.load_shard(i, verify=True)
            except ShardCorruptedError:
                dropped = self.n_shards - i
                self.truncate(i)
                return dropped
        return 0

    def tokens(self, shards: Sequence[int] | None = None) -> np.ndarray:
        """Token ids of ``shards`` (all by default), concatenated: ``(n_contexts, L)`` int32."""
        ids = range(self.n_shards) if shards is None else shards
        return np.concatenate([np.asarray(self.load_shard(i)[1]) for i in ids], axis=0)

    def activations(self, shards: Sequence[int] | None = None) -> np.ndarray:
        """Activations of ``shards`` (all by default) as one float32 ``(n_contexts, L, d)`` array in memory."""
        ids = range(self.n_shards) if shards is None else shards
        return np.concatenate([np.asarray(self.load_shard(i)[0], dtype=np.float32) for i in ids], axis=0)


class ActivationStream:
    """Shuffled minibatches of activation vectors from a :class:`ShardStore`, indexed by step.

    Epoch ``e`` visits the selected shards in a random order and, within each
    shard, its content vectors (contexts x ``store.positions``) in a random
    order; batch ``i`` is the ``i``-th run of ``batch_size`` vectors of that
    sequence (a batch may straddle two shards; the leftover at the end of an
    epoch is dropped). Both orders are pure functions of ``(seed, epoch)``, so
    ``stream(i)`` is a pure function of ``i``: training can resume at any step
    and see exactly the batches an uninterrupted run would. At most two
    shards are held in memory (the current one and the previous), so the
    store can be far larger than RAM.

    Calling the stream returns ``(x, None, None)``, the batch format of
    :func:`gapbound.training.train`.

    Parameters
    ----------
    store : ShardStore
        The store to read.
    batch_size : int
        Vectors per batch.
    shards : sequence of int, optional
        Shard indices to use (e.g. a training split); all by default.
    seed : int
        Seed of the shuffling.
    device : torch.device or str
        Where batches are placed.
    """

    def __init__(
        self,
        store: ShardStore,
        batch_size: int,
        shards: Sequence[int] | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.store = store
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.shards = list(range(store.n_shards)) if shards is None else [int(i) for i in shards]
        if not self.shards:
            raise ValueError("shards must select at least one shard; the store is empty or the selection is")
        for i in self.shards:
            check_int("shard index", i, minimum=0, maximum=store.n_shards - 1)
        self.seed = check_int("seed", seed, minimum=0)
        self.device = torch.device(device)
        lo, hi = store.positions
        infos = store.shards
        self._sizes = np.array([infos[i].n_contexts * (hi - lo) for i in self.shards], dtype=np.int64)
        if len(self) == 0:
            raise ValueError(f"batch_size={self.batch_size} exceeds the {int(self._sizes.sum())} vectors in the selected shards")
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        """Full batches per epoch."""
        return int(self._sizes.sum()) // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        """Positions (into ``self.shards``) of the shards in epoch ``epoch``'s visiting order."""
        return np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.shards))

    def _shard_vectors(self, epoch: int, k: int) -> np.ndarray:
        """Shard ``self.shards[k]``'s content vectors, float32, in epoch ``epoch``'s order (cached)."""
        key = (epoch, k)
        if key not in self._cache:
            lo, hi = self.store.positions
            acts, _ = self.store.load_shard(self.shards[k])
            flat = np.asarray(acts[:, lo:hi, :], dtype=np.float32).reshape(-1, self.store.d_model)
            perm = np.random.default_rng([self.seed, epoch, 1, k]).permutation(flat.shape[0])
            while len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = flat[perm]
        return self._cache[key]

    def batch(self, step: int) -> torch.Tensor:
        """The ``(batch_size, d_model)`` float32 batch of training step ``step``."""
        step = check_int("step", step, minimum=0)
        epoch, j = divmod(step, len(self))
        order = self._order(epoch)
        ends = np.cumsum(self._sizes[order])
        start, stop = j * self.batch_size, (j + 1) * self.batch_size
        parts = []
        first = int(np.searchsorted(ends, start, side="right"))
        for pos in range(first, len(order)):
            begin = int(ends[pos] - self._sizes[order[pos]])
            if begin >= stop:
                break
            vectors = self._shard_vectors(epoch, int(order[pos]))
            parts.append(vectors[max(start - begin, 0):min(stop - begin, len(vectors))])
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def __call__(self, step: int) -> tuple[torch.Tensor, None, None]:
        return self.batch(step), None, None


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so stored and requested fingerprints compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))
