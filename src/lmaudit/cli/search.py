"""``lmaudit search``: BM25 search with phrase queries over a corpus index."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import command_line, console, end_run, fail, print_summary, say, start_run, state
from lmaudit.cli.options import option_groups

EXAMPLE = ('Example: lmaudit search --index runs/index "philosopher of Valdoria" --out runs/search\n\n'
           "Searches the index `lmaudit index build --data lmaudit-demo/data/members.jsonl --out runs/index` "
           "made (it builds the BM25 index too). Outside double quotes the query is a bag of words, "
           'each scored and the scores summed; inside them, a phrase: `"the cat sat"` matches those '
           "words in that order. Words are runs of letters and digits, lowercased; punctuation "
           "separates them and there are no operators. Without --out the hits are only shown.\n\n"
           "Exit status: 0 with or without hits; 2 when the search could not run (no index, a BM25 "
           "index that does not match it, a malformed query).")


@option_groups()
def search(
    query: Annotated[str, typer.Argument(help='Words, and phrases in double quotes: philosopher "of Valdoria".')],
    index: Annotated[Path, typer.Option(help="The corpus index folder (`lmaudit index build` makes it).")],
    limit: int = typer.Option(10, min=1, help="Hits to show."),
    offset: int = typer.Option(0, min=0, help="Best hits to skip (the next page: --offset 10)."),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write results.json and samples.jsonl "
                                                                     "(one row per hit) here.")] = None,
    build: bool = typer.Option(False, "--build", help="Build the BM25 index first where it is missing or out of "
                                                      "date (it lives in INDEX/bm25/)."),
) -> None:
    """The documents of a corpus index that best match a query, ranked by BM25 (tantivy)."""
    from lmaudit.corpus.bm25 import Bm25FormatError, load_bm25, update_bm25
    from lmaudit.corpus.index import IndexFormatError, load_index
    from lmaudit.corpus.search_run import run_search, search_to_dir

    started = time.time()
    if state.report and out is None:
        fail("--report needs --out: the report is made from the run written there")
    try:
        suffix = load_index(index)
        if build:
            say(f"bringing the BM25 index in {index}/bm25 up to date ({suffix.n_docs} documents)")
            bm25 = update_bm25(suffix)
        else:
            bm25 = load_bm25(suffix)
        bm25.parse(query)  # a malformed query fails before --out is touched
    except Bm25FormatError as err:
        fail(str(err) if build or "--build" in str(err) else f"{err}; or pass --build to update it here")
    except (IndexFormatError, ValueError) as err:  # an unreadable suffix index; a malformed query
        fail(str(err))
    if out is not None:
        start_run(out)
        results = search_to_dir(bm25, query, out, limit=limit, offset=offset, command=command_line(),
                                started=started)
        hits = _rows(out)  # as written
    else:
        results, hits = run_search(bm25, query, limit=limit, offset=offset)
        results = {**results, "summary": {"query": query, "n_matching": results["n_matching"],
                                          "n_hits": results["n_hits"], "n_docs": results["n_docs"]}}
    _show(results, hits)
    if out is not None:
        say(f"results in {out}/results.json, one row per hit in {out}/samples.jsonl")
        end_run(out, results, n_errors=0, rows="hits", why="")
        return
    summary = {**results["summary"], "hits": [{"rank": h["rank"], "id": h["id"], "score": h["score"]}
                                              for h in hits]}
    print_summary(summary)


def _rows(out: Path) -> list[dict]:
    import json

    with open(out / "samples.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _show(results: dict, hits: list[dict]) -> None:
    if state.quiet:
        return
    from rich.markup import escape
    from rich.table import Table

    first = results["offset"] + 1
    span = f"{first}-{results['offset'] + len(hits)}" if hits else "none"
    table = Table(title=f"search {escape(repr(results['query']))}: {results['n_matching']} of {results['n_docs']} documents "
                        f"match; hits {span}", show_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("snippet")
    for h in hits:
        table.add_row(str(h["rank"]), escape(str(h["id"])), f"{h['score']:.3f}", escape(h["snippet"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(search)
