"""``lmaudit score``: per-token statistics of a model on a data file."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from lmaudit.cli.common import command_line, fail, progress_bar, say, state

EXAMPLE = "Example: lmaudit score --model lmaudit-demo/model --data lmaudit-demo/data/members.jsonl --out runs/members"


def score(
    model: str = typer.Option(..., "--model", "-m", help="Hugging Face model name or local path (safetensors)."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL, text file, folder of .txt files, Parquet, or a saved `datasets` folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: results.json, samples.jsonl, tokens.parquet."),
    text_field: str = typer.Option("text", help="Field (JSONL) or column (Parquet, datasets) holding the text."),
    id_field: str = typer.Option("id", help="Field holding the row id; rows are numbered by line when it is absent."),
    fmt: str = typer.Option("auto", "--format", help="auto, jsonl, text, textdir, parquet or hf."),
    split: str = typer.Option(None, help="Split of a saved DatasetDict."),
    batch_size: int = typer.Option(16, min=1, help="Sequences per forward pass."),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or auto. Statistics are float32 regardless."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    bos: str = typer.Option("prepend", help="prepend: score every text token after a BOS; none: the first token is context only."),
    max_length: int = typer.Option(None, help="Longest sequence fed to the model (default: its context length)."),
    overflow: str = typer.Option("window", help="Texts longer than max-length: window (score all), truncate, or error."),
    stride: int = typer.Option(None, help="Sliding-window step (default: max-length // 2)."),
    padding_side: str = typer.Option("right", help="right or left; padding is always masked."),
    cache: Path = typer.Option(None, help="Score cache (SQLite). Default: OUT/cache.sqlite, so a re-run resumes."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write a cache."),
    trust_remote_code: bool = typer.Option(False, help="Run code shipped with the checkpoint."),
    seed: int = typer.Option(0, help="Recorded in results.json (scoring itself is deterministic)."),
) -> None:
    """Score every document: log-probability of each token, vocabulary mean/std and entropy."""
    from lmaudit.data import DataError, data_fingerprint, read_records
    from lmaudit.models.base import ScoringPolicy
    from lmaudit.models.hf import HFModel
    from lmaudit.scoring.run import score_to_dir
    from lmaudit.report.results import invalidate_results

    started = time.time()
    invalidate_results(out)  # from here on, a failure leaves no earlier result looking current
    try:
        policy = ScoringPolicy(bos=bos, max_length=max_length, overflow=overflow, stride=stride, padding_side=padding_side)
        records = read_records(data, text_field=text_field, id_field=id_field, fmt=fmt, split=split)
    except (DataError, ValueError) as err:
        fail(str(err))
    say(f"read {len(records)} documents from {data}")
    try:
        lm = HFModel.from_pretrained(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        fail(f"cannot load model {model!r}: {err}")
    try:
        policy.resolved(lm.max_length)  # a policy the model cannot honour fails before any work
    except ValueError as err:
        fail(str(err))
    with progress_bar("scoring", len(records)) as advance:
        results = score_to_dir(
            lm, records, out, policy=policy, batch_size=batch_size,
            cache_path=None if no_cache else (cache or Path(out) / "cache.sqlite"),
            data=[{**data_fingerprint(data), "text_field": text_field, "id_field": id_field, "format": fmt,
                   "split": split, "n_rows": len(records)}],
            command=command_line(), seed=seed, progress=advance, started=started,
        )
    s = results["summary"]
    say(f"scored {s['n_scored']}/{s['n_rows']} documents ({s['n_errors']} error rows), {s['n_tokens']} tokens; "
        f"mean loss {s['mean_doc_loss'] if s['mean_doc_loss'] is None else round(s['mean_doc_loss'], 4)}")
    if not state.quiet:
        say(f"results in {out}/results.json")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(score)
