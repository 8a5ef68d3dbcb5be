"""Offline English text: what ships with Python and with Debian packages, deduplicated and mixed.

GPT-2's OpenWebText needs a network. This module finds English prose that the
project can install on a fresh Debian/Ubuntu machine with its own files
(``python -m gapbound.lm.corpus --install`` runs the ``apt-get`` line) and
serves it as one text source, ``--text offline``. Sources (name: package, what):

- ``pydoc``: the Python installation's own ``pydoc_data`` (language reference topics);
- ``python-docs``: Debian ``python3.X-doc``, the Python documentation (reStructuredText sources);
- ``linux-docs``: Debian ``linux-doc-*``, the Linux kernel documentation (reStructuredText);
- ``gcide``: Debian ``dict-gcide``, the GNU Collaborative International Dictionary of
  English (Webster 1913 with literary citations);
- ``devil``: Debian ``dict-devil``, Ambrose Bierce's *The Devil's Dictionary*;
- ``fortunes``: Debian ``fortunes`` / ``fortunes-min``, quotations, jokes and verse;
- ``jargon``: Debian ``jargon-text``, the Jargon File;
- ``wordnet``: Debian ``wordnet-base``, WordNet 3.0 glosses and usage examples.

Deduplication: documents are split into paragraphs (blank-line separated);
a paragraph whose whitespace- and case-normalised text was already emitted by
any source is dropped (the pydoc topics, for example, are extracted from the
Python documentation), and so is a document left empty.

Mixing: sources are interleaved by characters (the next document comes from
the source that has emitted the fewest characters so far), so the first
million tokens of ``offline`` already contain every installed source, and a
store's held-out shards come from the same mix as its training shards.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterator

from .text import UnavailableError

__all__ = ["Source", "SOURCES", "installed_sources", "resolve_offline", "iter_offline", "iter_source", "install_command"]


@dataclass(frozen=True)
class Source:
    """One offline text source: where it comes from and how to read it."""

    name: str
    package: str | None  # Debian package(s) that install it; None: ships with Python
    description: str
    files: Callable[[], list[Path]]
    documents: Callable[[Path], Iterator[str]]


def _glob(pattern: str) -> Callable[[], list[Path]]:
    return lambda: sorted(Path(p) for p in glob.glob(pattern, recursive=True))


def _read(path: Path) -> str:
    raw = gzip.open(path).read() if path.suffix in (".gz", ".dz") else path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def _whole(path: Path) -> Iterator[str]:
    yield _read(path)


def _pydoc_files() -> list[Path]:
    try:
        import pydoc_data.topics as topics
    except ImportError:
        return []
    return [Path(topics.__file__)]


def _pydoc_docs(_: Path) -> Iterator[str]:
    from pydoc_data.topics import topics

    yield from (topics[k] for k in sorted(topics))


def _fortune_docs(path: Path) -> Iterator[str]:
    yield from re.split(r"\n%\n", _read(path))


def _dict_docs(path: Path) -> Iterator[str]:
    """dictd entries (blank-line separated), without the source tags and database headers."""
    for entry in re.split(r"\n\s*\n(?=\S)", _read(path)):
        if entry.startswith("00-database") or entry.startswith("00database"):
            continue
        yield re.sub(r"^\s*\[(1913 Webster|PJC|WordNet 1.5|Century Dict\.)[^\]]*\]\s*$", "", entry, flags=re.M)


def _wordnet_docs(path: Path) -> Iterator[str]:
    """Glosses of one ``data.*`` file, 50 synsets to a document."""
    glosses = [line.split(" | ", 1)[1].strip() for line in _read(path).splitlines()
               if not line.startswith("  ") and " | " in line]
    for i in range(0, len(glosses), 50):
        yield "\n\n".join(glosses[i:i + 50])


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("pydoc", None, "Python's bundled documentation topics (pydoc_data)", _pydoc_files, _pydoc_docs),
    Source("python-docs", "python3-doc", "the Python documentation, reStructuredText sources",
           _glob("/usr/share/doc/python3*/html/_sources/**/*.txt"), _whole),
    Source("linux-docs", "linux-doc", "the Linux kernel documentation, reStructuredText",
           _glob("/usr/share/doc/linux-doc-*/Documentation/**/*.rst.gz"), _whole),
    Source("gcide", "dict-gcide", "GNU Collaborative International Dictionary of English (Webster 1913)",
           _glob("/usr/share/dictd/gcide.dict.dz"), _dict_docs),
    Source("devil", "dict-devil", "Ambrose Bierce, The Devil's Dictionary",
           _glob("/usr/share/dictd/devil.dict.dz"), _dict_docs),
    Source("fortunes", "fortunes", "fortune cookies: quotations, jokes, verse",
           lambda: sorted(p for p in Path("/usr/share/games/fortunes").glob("*") if p.is_file() and not p.suffix)
           if Path("/usr/share/games/fortunes").is_dir() else [], _fortune_docs),
    Source("jargon", "jargon-text", "the Jargon File",
           _glob("/usr/share/doc/jargon-text/jargon.txt.gz"), _whole),
    Source("wordnet", "wordnet-base", "WordNet 3.0 glosses and examples",
           _glob("/usr/share/wordnet/data.*"), _wordnet_docs),
)}


def installed_sources() -> list[str]:
    """Names of the sources whose files are present on this machine."""
    return [name for name, src in SOURCES.items() if src.files()]


def install_command() -> str:
    """The ``apt-get`` line that installs every Debian-packaged source."""
    return "apt-get install -y --no-install-recommends " + " ".join(sorted({s.package for s in SOURCES.values() if s.package}))


def resolve_offline(text: str) -> list[str]:
    """The installed sources an ``offline`` / ``offline:NAME,...`` text source means.

    Raises
    ------
    ValueError
        An unknown source name, or a named source that is not installed.
    UnavailableError
        ``offline`` with no source installed at all.
    """
    names = text.split(":", 1)[1].split(",") if ":" in text else list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ValueError(f"unknown offline text source(s) {unknown}; known: {', '.join(SOURCES)}")
    present = set(installed_sources())
    if ":" in text:
        missing = [n for n in names if n not in present]
        if missing:
            raise ValueError(f"offline text source(s) {missing} are not installed; run `python -m gapbound.lm.corpus "
                             f"--install` (or: {install_command()})")
    chosen = [n for n in names if n in present]
    if not chosen:
        raise UnavailableError(f"no offline text source is installed; run `python -m gapbound.lm.corpus --install` "
                               f"(or: {install_command()})")
    return chosen


def iter_source(name: str) -> Iterator[str]:
    """The raw documents of one source, files in sorted order."""
    src = SOURCES[name]
    for path in src.files():
        yield from src.documents(path)


def _normalise(paragraph: str) -> bytes:
    return hashlib.blake2b(" ".join(paragraph.lower().split()).encode(), digest_size=12).digest()


def _pieces(name: str, seen: set[bytes], max_chars: int) -> Iterator[str]:
    """One source's documents without already-seen paragraphs, cut at paragraph ends into pieces of ~``max_chars``."""
    for doc in iter_source(name):
        piece: list[str] = []
        size = 0
        for para in re.split(r"\n\s*\n", doc):
            if not para.strip():
                continue
            key = _normalise(para)
            if key in seen:
                continue
            seen.add(key)
            piece.append(para.strip("\n"))
            size += len(para)
            if size >= max_chars:
                yield "\n\n".join(piece)
                piece, size = [], 0
        if piece:
            yield "\n\n".join(piece)


def iter_offline(text: str = "offline", max_chars: int = 4000) -> Iterator[str]:
    """Deduplicated documents of the chosen sources, interleaved by characters (see module docstring).

    Long documents are cut at paragraph ends into pieces of about ``max_chars``
    characters, so that one long file (the Jargon File is a single 1.6 MB
    document) cannot fill the first contexts on its own.
    """
    seen: set[bytes] = set()
    streams = {name: _pieces(name, seen, max_chars) for name in resolve_offline(text)}
    emitted = dict.fromkeys(streams, 0)
    while streams:
        name = min(streams, key=lambda n: (emitted[n], n))
        piece = next(streams[name], None)
        if piece is None:
            del streams[name]
            continue
        emitted[name] += len(piece)
        yield piece


def _report(tokenizer_name: str | None) -> int:
    """Print, per installed source, documents, characters and (optionally) tokens after deduplication."""
    tokenizer = None
    if tokenizer_name:
        from .models import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_name)
    seen: set[bytes] = set()
    total_chars = total_tokens = 0
    print(f"{'source':<12} {'package':<14} {'pieces':>8} {'chars':>12} {'tokens':>11}  description")
    for name in SOURCES:
        if name not in installed_sources():
            print(f"{name:<12} {SOURCES[name].package or '-':<14} {'(not installed)':>33}")
            continue
        docs = chars = tokens = 0
        for piece in _pieces(name, seen, 4000):  # sources in a fixed order: counts do not depend on interleaving
            docs += 1
            chars += len(piece)
            if tokenizer is not None:
                tokens += len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"]) + 1
        total_chars += chars
        total_tokens += tokens
        print(f"{name:<12} {SOURCES[name].package or '-':<14} {docs:>8,} {chars:>12,} {tokens:>11,}  {SOURCES[name].description}")
    print(f"{'total':<12} {'':<14} {'':>8} {total_chars:>12,} {total_tokens:>11,}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gapbound.lm.corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--install", action="store_true", help="apt-get install the Debian packages of every source")
    p.add_argument("--tokens", metavar="MODEL", default=None, help="also count tokens with MODEL's tokenizer (e.g. minilm, gpt2)")
    args = p.parse_args(argv)
    if args.install:
        import subprocess

        cmd = install_command().split()
        print(" ".join(cmd), file=sys.stderr)
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"error: apt-get exited {rc} (run as root, after apt-get update)", file=sys.stderr)
            return 2
    return _report(args.tokens)


if __name__ == "__main__":
    raise SystemExit(main())
