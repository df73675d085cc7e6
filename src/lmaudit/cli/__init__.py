"""The ``lmaudit`` command line: one module per subcommand."""

from __future__ import annotations

import typer

from lmaudit.cli import acr, copying, dataset_inference, demo, extract, knowledge, membership, paired_test, score, testbed
from lmaudit.cli.common import state

app = typer.Typer(
    name="lmaudit",
    help="Audit language models for their use of training data. Every run writes results.json with provenance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or tables (for CI and scripts)."),
) -> None:
    state.quiet = quiet
    from transformers.utils import logging as hf_logging

    # transformers' own bars and notices ("Loading weights", "Writing model shards") would
    # interleave with ours; its errors still show.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


for module in (score, membership, dataset_inference, paired_test, extract, copying, knowledge, acr, testbed, demo):
    module.register(app)


def main() -> None:
    app()
