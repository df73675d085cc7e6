"""``lmaudit dedup``: near-duplicate clusters of a corpus, and how many near-copies of each of
your documents it holds (the duplication count the memorization commands break down by)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, console, end_run, fail, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, option_groups

EXAMPLE = ("Example: lmaudit dedup --data lmaudit-demo/data/members.jsonl --data lmaudit-demo/data/nonmembers.jsonl "
           "--queries lmaudit-demo/data/reference.jsonl --threshold 0.8 --out runs/dedup\n\n"
           "Counts the near-copies of the testbed's reference sample (drawn from the generator, in neither split) "
           "in its members and non-members: a control, where every count should be 0 (the biographies share "
           "template phrases, not 80% of their word 5-grams). OUT/queries.jsonl is the reference rows with a "
           "`duplication` field, ready for `lmaudit extract --data runs/dedup/queries.jsonl`. Rows that already "
           "have a `duplication` field (the testbed's members) need another name: --count-field corpus_copies.\n\n"
           f"{EXIT_STATUS} Here an error row is a query without a word (empty, or only spaces and punctuation); "
           "corpus documents without a word are counted in results.json (n_empty), not errors.")


@option_groups()
def dedup(
    data: Annotated[list[Path], typer.Option(help="The corpus; repeat for several files (--data A --data B). "
                                                  "Ids must be unique across them.")],
    out: OutDir,
    inputs: DataOptions,
    threshold: float = typer.Option(0.8, min=0.0, max=1.0, help="Exact Jaccard of the word-shingle sets at or above "
                                                                 "which two documents are near-duplicates."),
    queries: Optional[Path] = typer.Option(None, help="Your documents: count the corpus's near-copies of each, "
                                                      "written back as OUT/queries.jsonl with --count-field."),
    num_perm: int = typer.Option(128, min=1, help="MinHash values per document."),
    shingle: int = typer.Option(5, min=1, help="Words per shingle."),
    bands: Optional[int] = typer.Option(None, min=1, help="LSH bands (default: the longest bands that catch a pair "
                                                          "at the threshold with probability >= 0.95; when none "
                                                          "does, bands of one value, with a warning)."),
    count_field: str = typer.Option("duplication", help="Field of OUT/queries.jsonl holding each query's count "
                                                        "(`duplication` is what extract, copying, acr and "
                                                        "knowledge break down by)."),
    top: int = typer.Option(10, min=0, help="Ids of the most similar near-copies kept per query."),
    seed: int = typer.Option(0, help="Seeds the MinHash hashing."),
) -> None:
    """Near-duplicates by MinHash-LSH (rensa), every candidate pair verified by exact Jaccard."""
    from lmaudit.corpus.dedup import choose_bands
    from lmaudit.corpus.dedup_run import dedup_to_dir
    from lmaudit.data import DataError

    if threshold <= 0:
        fail("--threshold must be above 0")
    try:
        lsh = choose_bands(threshold, num_perm, bands=bands)
    except ValueError as err:
        fail(f"--bands / --num-perm: {err}")
    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    corpus, entries = [], []
    for path in data:
        records, entry = inputs.read(path, role="corpus")
        corpus += records
        entries.append(entry)
    query_records = None
    if queries is not None:
        query_records, entry = inputs.read(queries, role="queries")
        entries.append(entry)
    say(f"LSH: {lsh.bands} bands of {lsh.rows} values; a pair at Jaccard {threshold} becomes a candidate with "
        f"probability {lsh.p_candidate(threshold):.3f}")
    if lsh.warning:
        from rich.markup import escape

        console.print(f"[bold yellow]warning:[/] LSH: {escape(lsh.warning)}", highlight=False)
    try:
        results = dedup_to_dir(corpus, out, queries=query_records, threshold=threshold, num_perm=num_perm,
                               shingle=shingle, bands=bands, seed=seed, top=top, count_field=count_field,
                               text_field=inputs.text_field, id_field=inputs.id_field, data=entries,
                               command=command_line(), started=started)
    except (DataError, ValueError) as err:
        fail(str(err))
    say(f"{results['n_documents']} documents: {results['n_in_clusters']} in {results['n_clusters']} clusters "
        f"({results['n_exact_copies']} exact copies, {results['n_empty']} without a word); {results['n_candidates']} "
        f"candidate pairs, {results['n_rejected']} rejected by exact Jaccard")
    if "queries" in results:
        q = results["queries"]
        say(f"{q['n_with_copies']} of {q['n_queries'] - q['n_errors']} queries have a near-copy in the corpus; "
            f"counts in {out}/queries.jsonl ({q['count_field']})")
    say(f"results in {out}/results.json, rows in {out}/samples.jsonl")
    end_run(out, results, n_errors=results["n_errors"], rows="queries", why="have no word to shingle")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(dedup)
