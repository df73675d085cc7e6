"""``lmaudit dataset-inference``: did the model train on this set of documents (Maini et al. 2024)?"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import EXIT_STATUS, command_line, end_run, fail, pass_bars, say, start_run
from lmaudit.cli.loading import OutDir, attack_resources, check_attacks
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, ScoringOptions, check_policy, option_groups

EXAMPLE = ("Example: lmaudit dataset-inference --model lmaudit-demo/model --suspect lmaudit-demo/data/members.jsonl "
           "--validation lmaudit-demo/data/nonmembers.jsonl --out runs/di\n\n"
           f"{EXIT_STATUS} Here an error row is a document without every feature, left out of the test (a "
           "--null-pool document: of the null calibration; n_pool_errors); documents left out by design "
           "(ReCaLL's prefix) have no row and are not errors.")


@option_groups()
def dataset_inference(
    suspect: Annotated[Path, typer.Option(help="Documents suspected to be in the training data.")],
    validation: Annotated[Path, typer.Option(help="Documents from the same distribution known not to be.")],
    out: OutDir,
    model: ModelOptions,
    scoring: ScoringOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    attacks: str = typer.Option(None, help="Attacks whose scores are the features (comma-separated, or 'all')."),
    null_trials: int = typer.Option(100, min=0, help="Validation-vs-validation runs for the empirical false-positive rate."),
    null_pool: Path = typer.Option(None, help="More known non-members, from the validation set's distribution, for the null "
                                   "calibration only: with validation + pool >= suspect + validation documents it checks the "
                                   "test at the size it is reported at. Never enters the reported test."),
    alpha: float = typer.Option(0.05, help="Significance level."),
    permutation: bool = typer.Option(False, "--permutation", help="Also run a permutation test on half B."),
    reference_model: Optional[list[str]] = typer.Option(
        None, help="Reference model (name or path) for reference_diff / reference_ratio, scored with its own tokenizer. "
                   "Repeat for several: each reference attack then runs once per model (reference_diff@1, @2, ...)."),
    reference_corpus: Path = typer.Option(None, help="Texts for DC-PDD's token frequencies."),
    recall_prefix: Path = typer.Option(None, help="Known non-members for ReCaLL's prefix (default: drawn from --validation and removed)."),
    mlm_perturber: str = typer.Option(None, help="Masked LM (name or path) for neighbourhood neighbours (default: offline word swaps)."),
    seed: int = typer.Option(0, help="Seeds the A/B split, null trials, p-value curve, ReCaLL's draw, neighbours and perturbation edits."),
) -> None:
    """Dataset inference: a calibrated p-value that the model trained on the suspect set."""
    from lmaudit.engines import EngineError
    from lmaudit.membership.dataset_inference import DatasetInferenceConfig, check_null_pool, dataset_inference_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    policy = scoring.policy()
    try:  # every option checked before any file is read or model loaded
        config = DatasetInferenceConfig(attacks=attacks, alpha=alpha, permutation=permutation, null_trials=null_trials,
                                        seed=seed)
    except ValueError as err:
        fail(str(err))
    check_attacks(attacks, reference_model=reference_model, reference_corpus=reference_corpus, backend=model.backend)
    runner = engine.get()  # Ray missing fails here, before any file is read
    suspect_recs, s_entry = inputs.read(suspect, role="suspect")
    validation_recs, v_entry = inputs.read(validation, role="validation")
    pool_recs, pool_entries = None, []
    if null_pool is not None:
        pool_recs, pool_entry = inputs.read(null_pool, role="null pool")
        pool_entries = [pool_entry]
        try:  # before any model is loaded
            check_null_pool(suspect_recs, validation_recs, pool_recs)
        except ValueError as err:
            fail(f"{null_pool}: {err}")
    resources, extra_entries = attack_resources(reference_model=reference_model, reference_corpus=reference_corpus,
                                                recall_prefix=recall_prefix, mlm_perturber=mlm_perturber,
                                                inputs=inputs, model=model)
    entries = [s_entry, v_entry, *pool_entries, *extra_entries]
    if "reference_model" in resources:  # the reference models score on the same engine
        resources["reference_model"] = engine.wrap(resources["reference_model"])
    lm = engine.wrap(model.load())
    check_policy(policy, lm)
    try:
        with pass_bars() as on_pass:
            results = dataset_inference_to_dir(
                lm, suspect_recs, validation_recs, out, config=config, policy=policy, null_pool=pool_recs, **resources,
                batch_size=model.batch_size, on_pass=on_pass, data=entries, command=command_line(),
                cache_path=scoring.cache_path(out), started=started, engine=runner)
    except (KeyError, ValueError, EngineError) as err:
        fail(str(err).strip('"'))
    show_dataset_inference(results)
    say(f"results in {out}/results.json")
    n_test, n_pool = results["n_errors"], results["n_pool_errors"]
    why = " and ".join([*([f"{n_test} left out of the test"] if n_test else []),
                        *([f"{n_pool} null-pool documents left out of the null calibration"] if n_pool else [])])
    end_run(out, results, n_errors=n_test + n_pool, rows="documents",
            why=f"had a feature that could not be scored ({why})")


def show_dataset_inference(r: dict) -> None:
    from lmaudit.cli.common import console

    null = r["null_calibration"]
    verdict = "[bold green]significant[/]" if r["significant"] else "not significant"
    say(f"dataset inference: p = {r['p_value']:.3g} ({verdict} at alpha = {r['alpha']}), "
        f"{r['n_suspect']} suspect vs {r['n_validation']} validation documents, Cohen's d = {r['effect_size']['cohens_d']:.2f}")
    if r.get("classifier_learned_nothing"):
        console.print(f"[bold red]WARNING: {r['test']['note']}.[/]")
    if null.get("skipped"):
        say(f"[bold red]null calibration skipped:[/] {null['skipped']}")
    if null["trials"]:
        lo, hi = null["false_positive_rate_ci"]
        size = null["calibrated_size"]
        say(f"null calibration: {null['rejections']}/{null['trials']} validation-vs-validation runs rejected "
            f"(false-positive rate {null['false_positive_rate']:.3f}, 95% CI {lo:.3f}-{hi:.3f}; a valid test gives ~{r['alpha']}), "
            f"at {size['suspect']['documents']} vs {size['validation']['documents']} documents"
            + (" (the reported size)" if null["at_reported_size"] else ""))
        if not null["at_reported_size"]:
            say(f"[yellow]null calibration size: {null['size_note']}.[/]")
        if lo > r["alpha"]:
            say(f"[bold red]WARNING: the test rejects more often than alpha = {r['alpha']} on validation vs validation: "
                "its p-values are not trustworthy on this data.[/]")
    if r.get("distribution_shift_flag"):
        shift = r["distribution_shift"]
        console.print(f"[bold white on red] DISTRIBUTION SHIFT [/] [bold red]model-free classifiers "
                      f"({', '.join(shift['flagged_by'])}) tell suspect from validation documents ({shift['rule']}): "
                      "a small p-value may reflect how the sets were chosen, not training.[/]")


def register(app: typer.Typer) -> None:
    app.command("dataset-inference", epilog=EXAMPLE)(dataset_inference)
