"""``lmaudit index build|count|locate|longest``: an exact-substring index over a corpus."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from lmaudit.cli.common import fail, say, state
from lmaudit.cli.options import DataOptions, EngineOptions, option_groups

index_app = typer.Typer(help="Build an exact-substring index of a corpus and look strings up in it.",
                        no_args_is_help=True)

IndexOption = Annotated[Path, typer.Option("--index", help="The index folder `lmaudit index build` wrote.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as one JSON object per line.")]
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


@index_app.callback()
def _group(ctx: typer.Context) -> None:
    state.command = f"index {ctx.invoked_subcommand}"


def parse_size(text: str) -> int:
    """``"256MiB"``, ``"1GiB"``, ``"64kb"`` or a number of bytes, as bytes.

    >>> parse_size("1GiB"), parse_size("1.5 MiB"), parse_size("4096")
    (1073741824, 1572864, 4096)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: give bytes or a number with KiB, MiB, GiB, kB, MB or GB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return size


def _open(path: Path):
    from lmaudit.corpus.index import IndexFormatError, load_index

    try:
        return load_index(path)
    except (IndexFormatError, OSError) as err:
        fail(str(err))


def _print(answer: dict, as_json: bool, line: str) -> None:
    if as_json:
        typer.echo(json.dumps(answer, ensure_ascii=False))  # even with --quiet: it is the answer
    else:
        typer.echo(line)


@index_app.command(epilog="Example: lmaudit index build --data lmaudit-demo/data/members.jsonl --out runs/index\n\n"
                          "Repeat --data for several files. With --append, adds the files to an existing index "
                          "as new shards (old shards are never rewritten). A build killed midway leaves no "
                          "index.json: run the same command again to restart it.")
@option_groups(omit=("overwrite", "report", "workers"))  # --jobs says how many shards are sorted at once
def build(
    data: Annotated[List[Path], typer.Option(help="Documents to index (JSONL, Parquet, text, a folder); repeat for several.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The index folder.")],
    inputs: DataOptions,
    engine: EngineOptions,
    shard_size: Annotated[Optional[str], typer.Option(
        help="Close a shard at this many bytes of text (256MiB, 1GiB): building one takes about 5.4x its size in "
             "RAM. Default: 1GiB for a new index, the index's own with --append.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Shards sorted at once, in worker processes (with --engine ray: "
                                                  "Ray tasks, one CPU each, every node seeing --out): with several "
                                                  "shards and cores (--shard-size 512MiB --jobs 2), RAM grows with it.")] = 1,
    append: Annotated[bool, typer.Option("--append", help="Add to the index in --out instead of building it.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Replace the index in --out.")] = False,
    bm25: Annotated[bool, typer.Option(help="Also build (or extend) the BM25 index `lmaudit search` reads.")] = True,
) -> None:
    """Index documents: a byte-level suffix array (count, locate, longest, attribute), and BM25 for search."""
    from lmaudit.corpus.index import DEFAULT_SHARD_BYTES, MANIFEST, IndexFormatError, build_index, load_index
    from lmaudit.data import DataError

    try:
        shard_bytes = parse_size(shard_size) if shard_size is not None else None
    except ValueError as err:
        fail(f"--shard-size: {err}")
    if append and rebuild:
        fail("--append adds to the index in --out and --rebuild replaces it: give one")
    exists = (out / MANIFEST).exists()
    if exists and not (append or rebuild):
        fail(f"{out} already holds an index: --append adds to it, --rebuild replaces it")
    if append and not exists:
        fail(f"--append: {out} holds no index to add to (build it first, without --append)")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file, not a folder")
    missing = [str(p) for p in data if not p.exists()]
    if missing:  # before --rebuild removes the old index
        fail(f"--data: no such file or folder: {', '.join(missing)}")
    runner = engine.get()  # Ray missing fails here, before --rebuild touches the old index
    started = time.time()
    sources: list[dict] = []

    def records():
        # One file's records in memory at a time (the index holds one shard's): a corpus larger
        # than memory builds when it comes as several files. `sources` is complete when the
        # index writes its manifest, after the last record is read.
        for path in data:
            recs, entry = inputs.read(path, role="corpus")
            sources.append(entry)
            yield from recs

    try:
        if append:
            index = load_index(out)
            before = index.n_docs
            index.append(records(), shard_bytes=shard_bytes, sources=sources, jobs=jobs, engine=runner)
            say(f"added {index.n_docs - before} documents to {out}")
        else:
            index = build_index(records(), out, shard_bytes=shard_bytes or DEFAULT_SHARD_BYTES, overwrite=rebuild,
                                sources=sources, jobs=jobs, engine=runner)
    except (DataError, IndexFormatError, FileExistsError, OSError) as err:
        fail(str(err))
    if bm25:
        try:
            _bm25(index, rebuild=not append)
        except (ValueError, FileExistsError, OSError) as err:
            fail(f"the exact index in {out} is built, but its BM25 index is not: {err}. Fix that, then run "
                 f"`lmaudit search --index {out} --build`")
    shards = len(index.manifest["shards"])
    say(f"{out}: {index.n_docs:,} documents, {index.n_bytes:,} bytes in {shards} shard{'s' if shards != 1 else ''} "
        f"({time.time() - started:.1f} s)")


def _bm25(index, *, rebuild: bool) -> None:
    """Build or extend the BM25 index beside the suffix array."""
    from lmaudit.corpus.bm25 import build_bm25, update_bm25

    if rebuild:
        build_bm25(index, overwrite=True)
    else:
        update_bm25(index)


@index_app.command(epilog="Example: lmaudit index count --index runs/index \"philosopher of Valdoria\" \"a poet\"")
def count(
    index: IndexOption,
    queries: Annotated[List[str], typer.Argument(help="Strings to count (exact, case-sensitive, bytes of UTF-8).")],
    as_json: JsonOption = False,
) -> None:
    """Exact occurrences of each string in the corpus (never across two documents)."""
    idx = _open(index)
    for q in queries:
        try:
            n = idx.count(q)
        except ValueError as err:
            fail(str(err))
        _print({"query": q, "count": n}, as_json, f"{n}\t{q}")


@index_app.command(epilog="Example: lmaudit index locate --index runs/index \"philosopher of Valdoria\" --limit 5")
def locate(
    index: IndexOption,
    query: Annotated[str, typer.Argument(help="The string to find.")],
    offset: Annotated[int, typer.Option(min=0, help="Occurrences to skip (pagination).")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="Occurrences to list.")] = 20,
    context: Annotated[int, typer.Option(min=0, help="Characters of the document shown either side.")] = 40,
    as_json: JsonOption = False,
) -> None:
    """The documents and byte offsets where a string occurs, in corpus order, a page at a time."""
    idx = _open(index)
    try:
        total, hits = idx.count(query), idx.locate(query, offset=offset, limit=limit)
    except ValueError as err:
        fail(str(err))
    if not as_json:
        shown = f"{offset + 1}-{offset + len(hits)} of {total:,}" if hits else f"none of {total:,}"
        typer.echo(f"{query!r}: occurrences {shown}")
    width = len(query.encode("utf-8", "surrogatepass"))
    for h in hits:
        doc = idx.document(h.doc).encode("utf-8", "surrogatepass")
        before = doc[max(0, h.offset - 4 * context) : h.offset].decode("utf-8", "replace")[-context:]
        after = doc[h.offset + width : h.offset + width + 4 * context].decode("utf-8", "replace")[:context]
        _print({"query": query, "doc_id": h.doc_id, "doc": h.doc, "offset": h.offset, "before": before, "after": after},
               as_json, f"{h.doc_id}\t@{h.offset}\t…{before}[{query}]{after}…".replace("\n", " "))


@index_app.command(epilog="Example: lmaudit index longest --index runs/index \"philosopher of Valdoria and the sea\"")
def longest(
    index: IndexOption,
    queries: Annotated[List[str], typer.Argument(help="Strings whose longest prefix found in the corpus is wanted.")],
    as_json: JsonOption = False,
) -> None:
    """The longest prefix of each string found verbatim in the corpus."""
    idx = _open(index)
    for q in queries:
        prefix = idx.longest(q)
        _print({"query": q, "longest": prefix, "chars": len(prefix)}, as_json, f"{len(prefix)}\t{prefix}")


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
