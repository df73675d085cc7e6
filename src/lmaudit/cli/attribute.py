"""``lmaudit attribute``: the corpus documents a model's outputs copy from, span by span."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, option_groups

EXAMPLE = ("Example: lmaudit attribute --index runs/index --outputs runs/extract/samples.jsonl "
           "--output-field generated --source-field id --out runs/attribute\n\n"
           "Attributes the extract example's continuations to the documents of the index example "
           "(the testbed's members); --source-field id names the document each output should come from, "
           "so the run also reports the share of attributed text that comes from it.\n\n"
           f"{EXIT_STATUS} Here an error row is an output row that is an error row of the command that wrote it, "
           "or lacks the --source-field.")


@option_groups()
def attribute(
    index: Annotated[Path, typer.Option("--index", help="The index folder `lmaudit index build` wrote.")],
    outputs: Annotated[Path, typer.Option(help="Model outputs to attribute, one row each.")],
    out: OutDir,
    inputs: DataOptions,
    output_field: Optional[str] = typer.Option(None, help="Field of --outputs holding the text (default: "
                                                          "--text-field); `generated` for lmaudit extract's rows."),
    min_bytes: int = typer.Option(32, min=1, help="Shortest span reported, in UTF-8 bytes."),
    min_words: Optional[int] = typer.Option(None, min=1, help="Also require this many whole words per span."),
    max_docs: int = typer.Option(10, min=0, help="Document ids listed per span (all are counted)."),
    source_field: Optional[str] = typer.Option(None, help="Field naming the document each output should come "
                                                          "from (`id` for lmaudit extract's rows)."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates for the intervals of the means."),
    seed: int = typer.Option(0, help="Seeds the bootstrap."),
) -> None:
    """Every maximal span of each output found verbatim in the corpus, with the documents holding it."""
    from lmaudit.corpus.attribution import AttributeConfig, attribute_to_dir
    from lmaudit.corpus.index import IndexFormatError, load_index

    config = AttributeConfig(min_bytes=min_bytes, min_words=min_words, max_docs=max_docs, source_field=source_field,
                             n_bootstrap=bootstrap, seed=seed)
    try:
        idx = load_index(index)
    except (IndexFormatError, OSError) as err:
        fail(str(err))
    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    records, entry = inputs.read(outputs, role="outputs", text_field=output_field or inputs.text_field,
                                 carry_errors=True)
    results = attribute_to_dir(idx, records, out, config=config, data=[entry], command=command_line(),
                               started=started)
    ws = results["with_span"]
    if results["n_outputs"]:
        lo, hi = ws["ci"]
        say(f"{ws['k']} of {ws['n']} outputs hold a span found in the corpus ({ws['rate']:.1%}, 95% CI "
            f"{lo:.1%}-{hi:.1%}); {results['attributed_share_pooled']:.1%} of their characters are attributed")
        if source_field and results.get("source_share_pooled") is not None:
            say(f"of the attributed characters, {results['source_share_pooled']:.1%} are in spans the expected "
                f"document (--source-field {source_field}) holds")
    say(f"results in {out}/results.json, per-output rows and spans in {out}/samples.jsonl")
    end_run(out, results, n_errors=results["n_errors"], rows="outputs",
            why="not attributed (an upstream error row, or no source field)")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(attribute)
