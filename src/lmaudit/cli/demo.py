"""``lmaudit demo``: build (or reuse) the default testbed and run every audit on it.

Audits, all on the testbed whose ground truth is known:
  scoring            per-token statistics of members and non-members
  membership         every default attack on all members vs all non-members, with blind baselines
  dataset inference  the first DI_SUSPECT members as the suspect set vs DI_SUSPECT non-members
  paired test        members' published text vs their private rephrasings, and the same for
                     non-members (the control: it should find nothing)
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer
from rich.table import Table

from lmaudit.cli.common import command_line, console, fail, pass_bars, progress_bar, say, state, step_bar
from lmaudit.cli.dataset_inference import show_dataset_inference
from lmaudit.cli.membership import show_membership

EXAMPLE = "Example: lmaudit demo --out lmaudit-demo"
DI_SUSPECT = 100  # documents per side in the dataset-inference demo (the target setting)
DI_NULL_TRIALS = 200
PAIRED_ITEMS = 200


def demo(
    out: Path = typer.Option(Path("lmaudit-demo"), "--out", "-o", help="Directory for the testbed and the results."),
    seed: int = typer.Option(0, help="Testbed seed."),
    size: str = typer.Option("default", help="Testbed size: default or tiny."),
    batch_size: int = typer.Option(32, min=1, help="Sequences per forward pass."),
) -> None:
    """Build the testbed if needed; score it, run membership attacks, dataset inference and paired tests."""
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

    audits = _run_audits(lm, out, members, nonmembers, seed=seed, batch_size=batch_size)

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
    summary.update(audits["summary"])
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
        files={name: file_entry(out / "results" / name / "results.json", rows=1, relative_to=out / "results")
               for name in [*runs, *audits["dirs"]]},
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
        show_membership(audits["membership"], title="membership attacks: all members vs all non-members")
        show_dataset_inference(audits["dataset_inference"])
        for name in ("members", "nonmembers"):
            p = audits["paired"][name]
            say(f"paired test, {name} (published text vs {p['n_private_versions']} private rephrasings, "
                f"{p['n_items']} items): loss difference {p['mean_difference']:+.3f}, paired t p = {p['paired_t']['p_value']:.2g}, "
                f"Wilcoxon p = {p['wilcoxon']['p_value']:.2g}")
    elif audits["membership"]["distribution_shift_flag"]:
        show_membership(audits["membership"])
    say(f"results: {out / 'results' / 'results.json'} (per-document rows in {out / 'results'}/*/samples.jsonl)")
    if state.quiet:
        typer.echo(json.dumps(results["summary"]))


def _run_audits(lm, out: Path, members, nonmembers, *, seed: int, batch_size: int) -> dict:
    """Membership, dataset inference and paired tests on the testbed; returns their results."""
    from lmaudit.data import data_fingerprint, read_records
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, dataset_inference_to_dir
    from lmaudit.membership.paired import paired_test_to_dir
    from lmaudit.membership.run import MembershipConfig, membership_to_dir
    from lmaudit.testbed.build import load_variants

    res, cache = out / "results", out / "results" / "cache.sqlite"
    data = lambda name: {**data_fingerprint(out / "data" / f"{name}.jsonl")}  # noqa: E731
    corpus = read_records(out / "data" / "reference.jsonl")
    with pass_bars() as on_pass:
        membership = membership_to_dir(
            lm, members, nonmembers, res / "membership", config=MembershipConfig(seed=seed), reference_corpus=corpus,
            batch_size=batch_size, on_pass=on_pass, cache_path=cache, command=command_line(),
            data=[{**data("members"), "role": "members"}, {**data("nonmembers"), "role": "nonmembers"},
                  {**data("reference"), "role": "reference corpus"}])
        di = dataset_inference_to_dir(
            lm, members[:DI_SUSPECT], nonmembers[:DI_SUSPECT], res / "dataset_inference",
            config=DatasetInferenceConfig(null_trials=DI_NULL_TRIALS, seed=seed), reference_corpus=corpus,
            batch_size=batch_size, on_pass=on_pass, cache_path=cache, command=command_line(),
            data=[{**data("members"), "role": "suspect", "rows": f"first {DI_SUSPECT}"},
                  {**data("nonmembers"), "role": "validation", "rows": f"first {DI_SUSPECT}"}])
    variants = load_variants(out)
    paired = {}
    for name, public in (("members", members), ("nonmembers", nonmembers)):
        private = [v[:PAIRED_ITEMS] for v in variants[name]]
        with progress_bar(f"paired test, {name}", PAIRED_ITEMS * (1 + len(private))) as advance:
            paired[name] = paired_test_to_dir(
                lm, public[:PAIRED_ITEMS], private, res / f"paired_{name}", batch_size=batch_size, progress=advance,
                cache_path=cache, command=command_line(),
                data=[{**data(name), "role": "public", "rows": f"first {PAIRED_ITEMS}"}]
                + [{**data_fingerprint(v[0].source), "role": "private"} for v in private])
    best = membership["summary"]["best_attack"]
    summary = {
        "membership": {"best_attack": best, "loss_auc": membership["attacks"]["loss"]["auc"],
                       "distribution_shift_flag": membership["distribution_shift_flag"]},
        "dataset_inference": {"p_value": di["p_value"], "n_suspect": di["n_suspect"], "n_validation": di["n_validation"],
                              "null_false_positive_rate": di["null_calibration"]["false_positive_rate"]},
        "paired_test": {name: {"p_value": p["p_value"], "wilcoxon_p_value": p["wilcoxon"]["p_value"],
                               "n_items": p["n_items"]} for name, p in paired.items()},
    }
    dirs = ["membership", "dataset_inference", "paired_members", "paired_nonmembers"]
    return {"membership": membership, "dataset_inference": di, "paired": paired, "summary": summary, "dirs": dirs}


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
