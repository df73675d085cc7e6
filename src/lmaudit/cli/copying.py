"""``lmaudit copying``: literal copying metrics of model outputs against their references."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, say, start_run
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, option_groups

EXAMPLE = ("Example: lmaudit copying --outputs runs/extract/samples.jsonl --output-field generated "
           "--references runs/extract/samples.jsonl --reference-field target --out runs/copying\n\n"
           "Reads the extract example's rows as they are. Any two files whose rows share ids work: "
           "--outputs F --references F, the text in a `text` field by default.\n\n"
           f"{EXIT_STATUS} Here an error row is a pair whose output or reference row is an error row of the "
           "command that wrote it (extract's rows for documents too short to extract have no `generated`): "
           "its error is carried through.")


@option_groups()
def copying(
    outputs: Annotated[Path, typer.Option(help="Model outputs, one row per id.")],
    references: Annotated[Path, typer.Option(help="The reference texts, same ids as the outputs.")],
    out: OutDir,
    inputs: DataOptions,
    output_field: str = typer.Option(None, help="Field of --outputs holding the text (default: --text-field); "
                                                "`generated` reads lmaudit extract's samples.jsonl as it is."),
    reference_field: str = typer.Option(None, help="Field of --references holding the text (default: "
                                                   "--text-field); `target` for lmaudit extract's samples.jsonl."),
    rouge_stem: bool = typer.Option(False, help="Porter-stem the tokens of rouge_1_f1 / rouge_l_f1 "
                                                "(MUSE VerbMem, CoTaEval: no)."),
    literal_stem: bool = typer.Option(True, help="Porter-stem the tokens of literal_copy (CopyBench: yes)."),
    literal_tokens: int = typer.Option(50, min=1, help="ROUGE tokens of each text compared for literal_copy "
                                                       "(CopyBench: 50)."),
    literal_threshold: float = typer.Option(0.8, help="ROUGE-L F1 that makes a literal copy (CopyBench: 0.8)."),
    substring_normalize: str = typer.Option("none", help="Text seen by lcs_chars, lcs_words, acs_words: none (raw) "
                                                         "or cotaeval (CoTaEval's lowercasing and punctuation "
                                                         "stripping; runs under --acs-min-run words dropped)."),
    acs_min_run: int = typer.Option(3, min=1, help="Shortest verbatim word run counted by acs_words."),
    span_min_chars: int = typer.Option(20, min=1, help="Shortest verbatim character span reported."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates for the intervals of the means "
                                                     "(rates: Clopper-Pearson)."),
    seed: int = typer.Option(0, help="Seeds the bootstrap."),
) -> None:
    """ROUGE, exact longest common substrings, edit distance, Jaccard, literal copy and verbatim spans."""
    from lmaudit.data import DataError
    from lmaudit.memorization.copying import CopyingConfig
    from lmaudit.memorization.copying_run import copying_to_dir

    try:
        config = CopyingConfig(rouge_stem=rouge_stem, literal_stem=literal_stem, literal_tokens=literal_tokens,
                               literal_threshold=literal_threshold, substring_normalize=substring_normalize,
                               acs_min_run=acs_min_run, span_min_chars=span_min_chars, n_bootstrap=bootstrap,
                               seed=seed)
        config.check_dependencies()
    except (ValueError, ImportError) as err:
        fail(str(err))
    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    # A row without its text but with an upstream `error` becomes an error row of this run.
    out_recs, out_entry = inputs.read(outputs, role="outputs", text_field=output_field or inputs.text_field,
                                      carry_errors=True)
    ref_recs, ref_entry = inputs.read(references, role="references", text_field=reference_field or inputs.text_field,
                                      carry_errors=True)
    try:
        results = copying_to_dir(out_recs, ref_recs, out, config=config, data=[out_entry, ref_entry],
                                 command=command_line(), started=started)
    except (DataError, ImportError) as err:
        fail(str(err))
    m = results["means"]
    if results["n_pairs"]:
        lo, hi = m["rouge_l_f1_ci"]
        say(f"{results['n_pairs']} pairs: literal copies {results['literal_copy_rate']:.1%}, mean ROUGE-L F1 "
            f"{m['rouge_l_f1']:.3f} (95% CI {lo:.3f}-{hi:.3f}), mean longest verbatim run {m['lcs_words']:.1f} "
            f"words ({m['lcs_chars']:.0f} characters)")
    say(f"results in {out}/results.json, per-pair rows in {out}/samples.jsonl")
    end_run(out, results, n_errors=results["n_errors"], rows="pairs", why="not compared (an upstream error row)")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(copying)
