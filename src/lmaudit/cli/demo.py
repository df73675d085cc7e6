"""``lmaudit demo``: build (or reuse) the default testbed and run every audit on it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer
from rich.table import Table

from lmaudit.cli.common import command_line, console, fail, progress_bar, say, state, step_bar

EXAMPLE = "Example: lmaudit demo --out lmaudit-demo"


def demo(
    out: Path = typer.Option(Path("lmaudit-demo"), "--out", "-o", help="Directory for the testbed and the results."),
    seed: int = typer.Option(0, help="Testbed seed."),
    size: str = typer.Option("default", help="Testbed size: default or tiny."),
    batch_size: int = typer.Option(32, min=1, help="Sequences per forward pass."),
) -> None:
    """Build the testbed if needed, score members and non-members, print one summary table."""
    from lmaudit.data import data_fingerprint
    from lmaudit.models.hf import HFModel
    from lmaudit.report.results import file_entry, model_provenance, write_results
    from lmaudit.scoring.run import score_to_dir
    from lmaudit.testbed.build import SIZES, build_testbed, load_complete, load_splits

    if size not in SIZES:
        fail(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    started = time.time()
    # Until this run finishes, nothing in results/ may claim to be a complete result.
    (out / "results" / "results.json").unlink(missing_ok=True)
    info = load_complete(out, seed=seed, size=size)
    lm = _load_matching(out, info) if info else None
    if lm is None:
        if info:
            say("the saved model or tokenizer does not match testbed.json; rebuilding")
        say(f"building the {size} testbed in {out} (seed {seed})")
        shutil.rmtree(out / "results", ignore_errors=True)  # results of another testbed
        with step_bar("training") as on_step:
            info = build_testbed(out, seed=seed, size=size, log=say, on_step=on_step)
        lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    else:
        say(f"reusing the complete testbed in {out}")

    members, nonmembers = load_splits(out)
    runs = {}
    for name, records in (("members", members), ("nonmembers", nonmembers)):
        with progress_bar(f"scoring {name}", len(records)) as advance:
            runs[name] = score_to_dir(
                lm, records, out / "results" / name, batch_size=batch_size,
                cache_path=out / "results" / "cache.sqlite", command=command_line(), seed=seed, progress=advance,
                data=[{**data_fingerprint(out / "data" / f"{name}.jsonl"), "n_rows": len(records)}],
            )

    measured = info["measured"]
    summary = {
        split: {
            "n_documents": runs[split]["summary"]["n_rows"],
            "n_errors": runs[split]["summary"]["n_errors"],
            "n_tokens": runs[split]["summary"]["n_tokens"],
            "mean_doc_loss": runs[split]["summary"]["mean_doc_loss"],
            "extraction_rate": measured[split]["extraction_rate"],
        }
        for split in ("members", "nonmembers")
    }
    summary["members_by_duplication"] = measured["members_by_duplication"]
    results = write_results(
        out / "results" / "results.json", command=command_line(), started=started,
        provenance={
            "model": model_provenance(lm),
            "policy": runs["members"]["provenance"]["policy"],
            "data": [d for name in runs for d in runs[name]["provenance"]["data"]],
            "testbed": {"seed": seed, "size": size, **file_entry(out / "testbed.json", rows=1, relative_to=out)},
            "seed": seed,
        },
        summary=summary,
        files={name: file_entry(out / "results" / name / "results.json", rows=1, relative_to=out / "results") for name in runs},
    )
    if not state.quiet:
        table = Table(title=f"lmaudit demo: {info['n_members']} members vs {info['n_nonmembers']} non-members")
        for col in ("split", "documents", "tokens", "mean loss", f"extracted ({measured['extraction_test']['prefix_tokens']}→{measured['extraction_test']['continuation_tokens']} greedy)"):
            table.add_column(col, justify="right" if col != "split" else "left")
        for split in ("members", "nonmembers"):
            s = summary[split]
            table.add_row(split, str(s["n_documents"]), str(s["n_tokens"]), f"{s['mean_doc_loss']:.3f}", f"{s['extraction_rate']:.1%}")
        for copies, s in measured["members_by_duplication"].items():
            table.add_row(f"  members seen {copies}x", str(s["n"]), "", f"{s['mean_loss']:.3f}", f"{s['extraction_rate']:.1%}")
        console.print(table)
    say(f"results: {out / 'results' / 'results.json'} (per-document rows in {out / 'results'}/*/samples.jsonl)")
    if state.quiet:
        typer.echo(json.dumps(results["summary"]))


def _load_matching(out: Path, info: dict):
    """The testbed's model, if it loads and matches the fingerprints in testbed.json, else None."""
    from lmaudit.models.hf import HFModel

    try:
        lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    except Exception:  # any missing or damaged file (transformers raises many types): rebuild
        return None
    if lm.fingerprint() != info["model_fingerprint"] or lm.tokenizer_fingerprint() != info["tokenizer_fingerprint"]:
        return None
    return lm


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(demo)
