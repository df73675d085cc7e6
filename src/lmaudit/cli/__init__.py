"""The ``lmaudit`` command line: one module per subcommand."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from lmaudit.cli import (acr, attribute, consent, copying, dataset_inference, dedup, demo, extract, knowledge, membership, paired_test, report, score,
                         index, search, takedown_eval, testbed, unlearn, unlearn_bench, unlearn_eval, watermark)
from lmaudit.cli.common import QUIET_HELP, state


def _untyped_flags(params: list) -> list:
    """Show flags (--quiet, --help, --no-cache) without the `<bool>` typer's help gives them:
    a flag takes no value."""
    for p in params:
        if getattr(p, "is_flag", False):
            p.display_type_rich = lambda ctx: None
    return params


class _Lmaudit(TyperGroup):
    """Keeps the arguments it was called with, for the command line results.json records
    (sys.argv is not them when the app is called from Python, as the tests do); shows flags
    without a type in every help."""

    def main(self, args=None, *rest, **kwargs):
        state.argv = list(sys.argv[1:] if args is None else args)
        return super().main(args, *rest, **kwargs)

    def get_params(self, ctx):
        return _untyped_flags(super().get_params(ctx))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            _untyped_flags(command.get_params(ctx))
            for sub in getattr(command, "commands", {}).values():  # a group's commands (watermark ...)
                _untyped_flags(sub.get_params(ctx))
        return command


app = typer.Typer(
    cls=_Lmaudit,
    name="lmaudit",
    help="Audit language models for their use of training data. Every run writes results.json with provenance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    state.quiet = quiet  # every command takes --quiet too, after its name
    state.command = ctx.invoked_subcommand
    from transformers.utils import logging as hf_logging

    # transformers' own bars and notices ("Loading weights", "Writing model shards") would
    # interleave with ours; its errors still show.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


for module in (score, membership, dataset_inference, paired_test, extract, copying, knowledge, acr, testbed, unlearn,
               unlearn_eval, unlearn_bench, takedown_eval, watermark, index, attribute, search, dedup, consent,
               demo, report):
    module.register(app)


def main() -> None:
    app()
