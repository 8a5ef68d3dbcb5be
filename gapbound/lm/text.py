"""Text sources and fixed-length contexts.

A *text source* is a string: ``"openwebtext"`` (streamed from the Hugging Face
hub, online), ``"pydoc"`` (Python's bundled documentation topics, ~130k
tokens), ``"offline"`` or ``"offline:NAME,NAME"`` (the deduplicated mix of
English text that ships with Python and with Debian packages, see
:mod:`gapbound.lm.corpus`), or the path of a UTF-8 file or of a directory of
``.txt``/``.md`` files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..utils.validation import check_int

__all__ = ["OPENWEBTEXT", "UnavailableError", "iter_documents", "iter_contexts", "text_id", "bos_token_id"]

OPENWEBTEXT = "Skylion007/openwebtext"


class UnavailableError(OSError):
    """A requested model, dataset or package is not available on this machine."""


def iter_documents(text: str) -> Iterator[str]:
    """Yield the documents of a text source.

    Parameters
    ----------
    text : str
        ``"openwebtext"``, ``"pydoc"``, ``"offline"`` / ``"offline:NAME,..."``,
        or the path of a UTF-8 text file or of a directory whose ``*.txt`` /
        ``*.md`` files (sorted, recursive) are the documents.

    Raises
    ------
    ValueError
        A path that does not exist, a directory without text files, an unknown
        offline source name.
    UnavailableError
        OpenWebText without network, or no offline source installed.
    """
    if not isinstance(text, str) or not text:
        raise TypeError(f"text must be 'openwebtext', 'offline', 'pydoc' or a path, got {text!r}")
    if text == "pydoc":
        from pydoc_data.topics import topics

        yield from (topics[key] for key in sorted(topics))
    elif text == "openwebtext":
        yield from _openwebtext()
    elif text == "offline" or text.startswith("offline:"):
        from .corpus import iter_offline

        yield from iter_offline(text)
    else:
        path = Path(text)
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
            if not files:
                raise ValueError(f"text directory {path} contains no .txt or .md files")
            for f in files:
                yield f.read_text(encoding="utf-8", errors="replace")
        else:
            raise ValueError(f"text must be 'openwebtext', 'offline', 'pydoc' or an existing file or directory, got {text!r}")


def text_id(text: str) -> str:
    """The text source as recorded in a store's fingerprint (paths resolved, offline mixes with their sources)."""
    if text in ("pydoc", "openwebtext"):
        return text
    if text == "offline" or text.startswith("offline:"):
        from .corpus import resolve_offline

        return "offline:" + ",".join(resolve_offline(text))
    return str(Path(text).resolve())


def _openwebtext() -> Iterator[str]:
    from .models import hub_reachable

    try:
        import datasets
    except ImportError as err:
        raise UnavailableError(
            "streaming OpenWebText needs the 'datasets' package (pip install 'gapbound[lm]') and network access. "
            "Without them use local text: --text offline (English text shipped with Python and Debian packages), "
            "--text pydoc, or --text PATH (a UTF-8 file or a directory of .txt files)."
        ) from err
    if not hub_reachable():
        raise UnavailableError(
            "OpenWebText is streamed from the Hugging Face hub, which cannot be reached. Use local text instead: "
            "--text offline, --text pydoc, or --text PATH (a UTF-8 file or a directory of .txt files)."
        )
    for row in datasets.load_dataset(OPENWEBTEXT, split="train", streaming=True):
        yield row["text"]


def bos_token_id(tokenizer: Any) -> int | None:
    """The token a context starts with when BOS is prepended: ``bos``, else ``cls`` (WordPiece), else None."""
    for attr in ("bos_token_id", "cls_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return None


def iter_contexts(
    documents: Iterable[str], tokenizer: Any, context_length: int = 128, wrap: bool = False, prepend_bos: bool = False
) -> Iterator[np.ndarray]:
    """Cut a document stream into contexts of exactly ``context_length`` tokens.

    Documents are tokenized without special tokens and concatenated, separated
    by the end-of-text token (``eos``, else ``sep``), as in GPT-2's training
    data; the stream is then cut into consecutive windows. With ``wrap`` (masked
    models) each window holds ``context_length - 2`` content tokens between
    ``[CLS]`` and ``[SEP]``; with ``prepend_bos`` (causal models, SAELens's
    default) it holds ``context_length - 1`` content tokens after BOS. A final
    partial window is dropped.

    Yields
    ------
    np.ndarray
        ``int32`` token ids of length ``context_length``.
    """
    context_length = check_int("context_length", context_length, minimum=3 if wrap else (2 if prepend_bos else 1))
    if wrap and (tokenizer.cls_token_id is None or tokenizer.sep_token_id is None):
        raise ValueError("wrap=True needs a tokenizer with [CLS] and [SEP] tokens")
    head: list[int] = []
    tail: list[int] = []
    if wrap:
        head, tail = [tokenizer.cls_token_id], [tokenizer.sep_token_id]
    elif prepend_bos:
        bos = bos_token_id(tokenizer)
        if bos is None:
            raise ValueError("prepend_bos needs a tokenizer with a BOS (or CLS) token; pass prepend_bos=False (--no-prepend-bos)")
        head = [bos]
    content = context_length - len(head) - len(tail)
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pending = np.zeros(0, dtype=np.int64)
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"]
        if not ids:
            continue
        end = [sep] if sep is not None else []
        pending = np.concatenate([pending, np.asarray(ids + end, dtype=np.int64)])
        n_full = len(pending) // content
        for i in range(n_full):
            chunk = pending[i * content:(i + 1) * content]
            yield np.concatenate([head, chunk, tail]).astype(np.int32)
        pending = pending[n_full * content:]
