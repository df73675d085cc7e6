"""``lmaudit paired-test``: STAMP-style test of a public version against private rephrasings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, List

import typer

from lmaudit.cli.common import command_line, fail, print_summary, progress_bar, say, start_run, state, write_run_report
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, ScoringOptions, check_policy, option_groups

EXAMPLE = ("Example: lmaudit paired-test --model lmaudit-demo/model --public lmaudit-demo/data/members.jsonl "
           "--private lmaudit-demo/data/variants/members.v1.jsonl lmaudit-demo/data/variants/members.v2.jsonl --out runs/stamp")


@option_groups()
def paired_test(
    ctx: typer.Context,
    public: Annotated[Path, typer.Option(help="The published version of each item.")],
    private: Annotated[List[Path], typer.Option(help="Private versions (same ids, other words): --private F [F ...].")],
    out: OutDir,
    model: ModelOptions,
    scoring: ScoringOptions,
    inputs: DataOptions,
    engine: EngineOptions,
) -> None:
    """Paired t-test and Wilcoxon test: is the public version favoured over its private twins?"""
    from lmaudit.data import DataError, align_by_id
    from lmaudit.engines import EngineError
    from lmaudit.membership.paired import paired_test_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    # `--private a b c`: click takes one value per option, so the files after the first
    # arrive as extra arguments.
    stray = [a for a in ctx.args if a.startswith("-")]
    if stray:
        fail(f"unknown option(s): {' '.join(stray)}")
    private = [*private, *(Path(a) for a in ctx.args)]
    policy = scoring.policy()
    runner = engine.get()  # Ray missing fails here, before any file is read
    public_recs, entry = inputs.read(public, role="public")
    entries, versions = [entry], []
    for path in private:
        recs, entry = inputs.read(path, role="private")
        versions.append(recs)
        entries.append(entry)
    try:
        align_by_id(public_recs, versions)  # every row's partners, checked before the model loads
    except DataError as err:
        fail(str(err))
    lm = engine.wrap(model.load())
    check_policy(policy, lm)
    try:
        with progress_bar("scoring", len(public_recs) * (1 + len(versions))) as advance:
            results = paired_test_to_dir(lm, public_recs, versions, out, policy=policy, batch_size=model.batch_size,
                                         progress=advance, data=entries, command=command_line(), started=started,
                                         cache_path=scoring.cache_path(out), engine=runner)
    except (DataError, ValueError, EngineError) as err:
        fail(str(err))
    r = results
    say(f"paired test on {r['n_items']} items x {r['n_private_versions']} private versions: mean loss difference "
        f"(private - public) {r['mean_difference']:.4f}; paired t p = {r['paired_t']['p_value']:.3g}, "
        f"Wilcoxon p = {r['wilcoxon']['p_value']:.3g}")
    say(f"results in {out}/results.json")
    summary = {**results["summary"], **({"report": write_run_report(out)} if state.report else {})}
    print_summary(summary)  # no error rows: an unscorable version fails the run (exit status 2)


def register(app: typer.Typer) -> None:
    app.command("paired-test", epilog=EXAMPLE, context_settings={"allow_extra_args": True})(paired_test)
