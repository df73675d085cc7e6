"""``lmaudit watermark generate|detect|evaluate|radioactivity``: provenance marks on text."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import command_line, end_run, fail, progress_bar, say, start_run, state, step_bar
from lmaudit.cli.loading import OutDir
from lmaudit.cli.options import DataOptions, EngineOptions, ModelOptions, option_groups

WM = "Watermark"
KEY_HELP = "The secret key (a non-negative integer; only its id is written)."
KeyOption = Annotated[int, typer.Option(min=0, help=KEY_HELP, rich_help_panel=WM)]

watermark_app = typer.Typer(help="Watermark text, detect it, attack it, and test whether a model was trained on it.",
                            no_args_is_help=True)


@watermark_app.callback()
def _group(ctx: typer.Context) -> None:
    state.command = f"watermark {ctx.invoked_subcommand}"


def _config(path: Path):
    from lmaudit.watermark.config import WatermarkConfig

    try:
        return WatermarkConfig.load(path)
    except (OSError, ValueError) as err:
        fail(str(err))


def _check_options(*, preset: str | None = None, gamma: float | None = None, delta: float | None = None,
                   temperature: float | None = None, alpha: float | None = None) -> None:
    """Options that can be checked without the model, before anything is read or written."""
    from lmaudit.watermark.config import PRESETS

    if preset is not None and preset not in PRESETS:
        fail(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if gamma is not None and not 0 < gamma < 1:
        fail(f"--gamma must lie strictly between 0 and 1, got {gamma}")
    if delta is not None and not 0 <= delta < float("inf"):
        fail(f"--delta must be a finite non-negative number, got {delta}")
    if temperature is not None and not temperature > 0:
        fail(f"--temperature must be positive, got {temperature}")
    if alpha is not None and not 0 < alpha < 1:
        fail(f"--alpha must lie strictly between 0 and 1, got {alpha}")


def _finish(out: Path, r: dict) -> None:
    """Every watermark run writes results; error rows set exit status 1 like other commands."""
    n_errors = int(r["summary"].get("n_errors") or 0)
    say(f"results in {out}/results.json, rows in {out}/samples.jsonl")
    end_run(out, r, n_errors=n_errors, rows="documents", why="have no result (too short for the prompt)")


@watermark_app.command(epilog="Example: lmaudit watermark generate --model lmaudit-demo/model "
                              "--data lmaudit-demo/data/nonmembers.jsonl --key 15485863 --out runs/wm-generate")
@option_groups()
def generate(
    data: Annotated[Path, typer.Option(help="Documents whose first tokens are the prompts.")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    key: KeyOption,
    preset: Annotated[str, typer.Option(help="lefthash, selfhash, minhash, skipgram, unigram or gumbel.",
                                        rich_help_panel=WM)] = "selfhash",
    gamma: Annotated[float, typer.Option(help="KGW green share.", rich_help_panel=WM)] = 0.25,
    delta: Annotated[float, typer.Option(help="KGW green bias (logits).", rich_help_panel=WM)] = 2.0,
    no_watermark: Annotated[bool, typer.Option("--no-watermark", help="The same decoding without a watermark.",
                                               rich_help_panel=WM)] = False,
    prompt_tokens: int = typer.Option(16, min=0, help="Prompt: each document's first tokens (0: the whole text)."),
    max_new_tokens: int = typer.Option(128, min=1, help="Tokens generated per prompt."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (lm-watermarking's 0.7)."),
    seed: int = typer.Option(0, help="Seeds sampling."),
) -> None:
    """Continue each document's prompt with a watermark; writes watermark.json (the config detection needs)."""
    from lmaudit.engines import EngineError
    from lmaudit.models.base import GenerationConfig
    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.run import generate_to_dir

    started = time.time()
    _check_options(preset=preset, gamma=gamma, delta=delta, temperature=temperature)
    if not no_watermark:
        model.require("logits_processors", audit="watermarked generation")
    start_run(out)
    runner = engine.get()  # Ray missing fails here, before any file is read
    records, entry = inputs.read(data, role="documents")
    lm = engine.wrap(model.load())
    try:
        config = None if no_watermark else WatermarkConfig.create(lm, key, preset=preset, gamma=gamma, delta=delta)
        gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                               stop_at_eos=False, seed=seed)
        with step_bar("generating"):
            r = generate_to_dir(lm, records, config, key, out, generation=gen, prompt_tokens=prompt_tokens,
                                batch_size=model.batch_size, data=[entry], command=command_line(), started=started,
                                engine=runner)
    except (ValueError, EngineError) as err:
        fail(str(err))
    if config is not None:
        d = r["summary"]["self_check"]["detected"]
        say(f"{r['summary']['n_generated']} watermarked continuations ({preset}); {d['k']} of {d['n']} detected at "
            f"p < 0.001 from their own tokens; config in {out}/watermark.json")
    _finish(out, r)


@watermark_app.command(epilog="Example: lmaudit watermark detect --model lmaudit-demo/model "
                              "--config runs/wm-generate/watermark.json --key 15485863 "
                              "--data runs/wm-generate/samples.jsonl --out runs/wm-detect")
@option_groups()
def detect(
    data: Annotated[Path, typer.Option(help="Texts to test (only these: leave prompts out).")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    config: Annotated[Path, typer.Option(help="watermark.json of the generation (or its results.json).",
                                         rich_help_panel=WM)],
    key: KeyOption,
    min_tokens: int = typer.Option(16, min=1, help="Fewest scored tokens for a p-value (else: too short to test)."),
    alpha: float = typer.Option(1e-3, help="Significance level of 'detected'."),
    no_dedup: bool = typer.Option(False, "--no-dedup", help="Count repeated (context, token) pairs (invalidates p)."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Skip NFKC, zero-width and homoglyph folding."),
    no_spans: bool = typer.Option(False, "--no-spans", help="Skip the window search for pasted passages."),
) -> None:
    """Exact test of each text: z, p-value, z over T, and the best windows with a corrected p-value."""
    from lmaudit.watermark.config import ConfigMismatch
    from lmaudit.watermark.run import detect_to_dir

    started = time.time()
    _check_options(alpha=alpha)
    wcfg = _config(config)
    start_run(out)
    records, entry = inputs.read(data, role="texts")
    lm = model.load()
    try:
        r = detect_to_dir(lm, records, wcfg, key, out, min_tokens=min_tokens, alpha=alpha, dedup=not no_dedup,
                          normalize=not no_normalize, spans=not no_spans, data=[entry], command=command_line(),
                          started=started)
    except (ConfigMismatch, ValueError) as err:
        fail(str(err))
    s = r["summary"]
    say(f"{s['detected']['k']} of {s['n_tested']} texts watermarked at p < {alpha:g} ({s['n_too_short']} too short "
        "to test)")
    _finish(out, r)


@watermark_app.command(epilog="Example: lmaudit watermark evaluate --model lmaudit-demo/model "
                              "--data lmaudit-demo/data/nonmembers.jsonl --key 15485863 --max-docs 50 "
                              "--out runs/wm-evaluate")
@option_groups()
def evaluate(
    data: Annotated[Path, typer.Option(help="Documents: prompts, and the human text of copy-paste.")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    key: KeyOption,
    presets: str = typer.Option("lefthash,selfhash,gumbel", help="Schemes compared (comma-separated presets)."),
    attacks: Optional[str] = typer.Option(None, help="Attack spec, e.g. 'none,delete(fraction=0.3)' (default: all)."),
    oracle: Optional[str] = typer.Option(None, help="Model whose perplexity prices quality (default: --model)."),
    max_docs: int = typer.Option(200, min=0, help="Documents used (0: all)."),
    prompt_tokens: int = typer.Option(16, min=1, help="Prompt tokens per document."),
    max_new_tokens: int = typer.Option(128, min=1, help="Tokens generated per prompt."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of both generations."),
    gamma: float = typer.Option(0.25, help="KGW green share."),
    delta: float = typer.Option(2.0, help="KGW green bias."),
    min_tokens: int = typer.Option(16, min=1, help="Fewest scored tokens for a p-value."),
    alpha: float = typer.Option(1e-3, help="Significance level of detection rates."),
    bootstrap: int = typer.Option(1000, min=10, help="Bootstrap replicates."),
    seed: int = typer.Option(0, help="Seeds sampling, attacks and bootstraps."),
) -> None:
    """Schemes × attacks: ROC-AUC, TPR at FPR 1% and 0.1%, detection rate over T, perplexity cost."""
    from lmaudit.engines import EngineError
    from lmaudit.watermark.evaluate import DEFAULT_ATTACKS, WatermarkEvalConfig
    from lmaudit.watermark.run import evaluate_to_dir

    started = time.time()
    try:
        cfg = WatermarkEvalConfig(presets=tuple(p.strip() for p in presets.split(",")),
                                  attacks=attacks or DEFAULT_ATTACKS, prompt_tokens=prompt_tokens,
                                  max_new_tokens=max_new_tokens, temperature=temperature, gamma=gamma, delta=delta,
                                  min_tokens=min_tokens, alpha=alpha, n_bootstrap=bootstrap, seed=seed)
    except (KeyError, ValueError) as err:
        fail(str(err.args[0] if isinstance(err, KeyError) else err))
    model.require("logits_processors", audit="the watermark evaluation")
    start_run(out)  # options are checked first: a bad one leaves nothing behind
    runner = engine.get()  # Ray missing fails here, before any file is read
    records, entry = inputs.read(data, role="documents")
    if max_docs:
        records = records[:max_docs]
    lm = engine.wrap(model.load())  # generates on the engine; the oracle's perplexity is computed here
    judge = model.load(oracle, what="oracle") if oracle else None
    from lmaudit.watermark.attacks import parse_attacks

    steps = 1 + len(cfg.presets) * (len(parse_attacks(cfg.attacks)) + 2)  # as run_watermark_eval reports them
    try:
        with progress_bar("evaluating (generation, attacks, perplexity)", steps) as advance:
            r = evaluate_to_dir(lm, records, key, out, config=cfg, oracle=judge, batch_size=model.batch_size,
                                data=[entry], command=command_line(), started=started, on_step=lambda _: advance(1),
                                engine=runner)
    except (ValueError, EngineError) as err:
        fail(str(err))
    for preset, aucs in r["summary"]["auc"].items():
        say(f"{preset}: AUC " + ", ".join(f"{a} {v:.3f}" for a, v in aucs.items() if v is not None))
    _finish(out, r)


@watermark_app.command(epilog="Example: lmaudit watermark radioactivity --model lmaudit-demo/radioactive/watermarked "
                              "--config lmaudit-demo/radioactive/watermark.json --key 15485863 "
                              "--prompts lmaudit-demo/radioactive/data/watermarked.jsonl --out runs/radioactivity")
@option_groups()
def radioactivity(
    prompts: Annotated[Path, typer.Option(help="Texts: read whole by the open test; their first tokens prompt the "
                                               "closed test (your watermarked texts suit both).")],
    out: OutDir,
    model: ModelOptions,
    inputs: DataOptions,
    engine: EngineOptions,
    config: Annotated[Path, typer.Option(help="watermark.json of your watermarked text.", rich_help_panel=WM)],
    key: KeyOption,
    setting: str = typer.Option("open,closed", help="open (the model's predictions), closed (its generations), or both."),
    null_keys: int = typer.Option(1000, min=0, help="Random keys of the null calibration (0: none)."),
    prompt_tokens: int = typer.Option(16, min=1, help="Closed test: prompt tokens per text."),
    max_new_tokens: int = typer.Option(64, min=1, help="Closed test: tokens generated per prompt."),
    alpha: float = typer.Option(1e-3, help="Significance level of 'detected'."),
    seed: int = typer.Option(0, help="Seeds the null keys."),
) -> None:
    """Was this model trained on text watermarked under KEY? Pooled, deduplicated exact tests and their null calibration."""
    from lmaudit.engines import EngineError
    from lmaudit.models.base import CapabilityError, GenerationConfig
    from lmaudit.watermark.config import ConfigMismatch
    from lmaudit.watermark.run import radioactivity_to_dir

    started = time.time()
    settings = tuple(s.strip() for s in setting.split(",") if s.strip())
    if not settings or set(settings) - {"open", "closed"}:
        fail(f"--setting takes open, closed or open,closed; got {setting!r}")
    if "open" in settings:
        model.require("predictions", audit="the open-model radioactivity test (--setting closed does not need it)")
    _check_options(alpha=alpha)
    wcfg = _config(config)
    start_run(out)
    runner = engine.get()  # Ray missing fails here, before any file is read
    records, entry = inputs.read(prompts, role="texts")
    lm = engine.wrap(model.load())  # the closed test generates on the engine; the open test reads here
    try:
        with step_bar("testing"):
            r = radioactivity_to_dir(lm, records, wcfg, key, out, settings=settings, prompt_tokens=prompt_tokens,
                                     generation=GenerationConfig(max_new_tokens=max_new_tokens, stop_at_eos=False),
                                     null_keys=null_keys, alpha=alpha, seed=seed, batch_size=model.batch_size,
                                     data=[entry], command=command_line(), started=started, engine=runner)
    except (CapabilityError, ConfigMismatch, ValueError, EngineError) as err:
        fail(str(err))
    for name, t in r["summary"].items():
        say(f"{name} model test: {t['n_scored']} scored tokens, score share {t.get('green_fraction')}, "
            f"z {t['z']}, p {t['p_value']:.3g}" if t["p_value"] is not None else f"{name}: nothing to score")
    n_errors = int(r["radioactivity"].get("closed", {}).get("n_errors", 0))
    end_run(out, r, n_errors=n_errors, rows="texts", why="were too short for the closed test's prompt")


def register(app: typer.Typer) -> None:
    app.add_typer(watermark_app, name="watermark")
