"""``lmaudit unlearn``: remove a forget set from a model (a forget loss + a retain loss, or model arithmetic)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmaudit.cli.common import console, command_line, fail, print_summary, say, start_run
from lmaudit.cli.options import DataOptions, ModelOptions, option_groups

EXAMPLE = ("Example: lmaudit unlearn --model lmaudit-demo/model --forget lmaudit-demo/data/forget.jsonl "
           "--retain lmaudit-demo/data/retain.jsonl --method npo --retain-loss kl --lr 1e-3 --epochs 4 --batch-size 8 "
           "--out runs/unlearn\n\n"
           "The forget split is the one `lmaudit demo --all` (or `lmaudit testbed --forget 100`) adds to the testbed.\n\n"
           "With a retain set: --retain FILE --retain-loss kl (or nll); with LoRA: --lora-r 8; Who's Harry Potter: "
           "--method whp, whose --out/model loads in every command as the combined model.\n\n"
           "On several GPUs: accelerate launch --config_file CONFIG -m lmaudit unlearn ... (DeepSpeed, FSDP or DDP "
           "configs; the loop is accelerate's).\n\n"
           "Exit status: 0 when the unlearned model and results.json are written; 2 when the command could not run "
           "(bad options or input; no results.json).")


@option_groups(omit=("dtype", "device", "batch_size", "backend"))  # training precision, device and batch are this command's own; it trains a transformers model
def unlearn(
    forget: Annotated[Path, typer.Option(help="Documents to remove (JSONL, text, Parquet, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: model/ (and adapter/), results.json.")],
    model: ModelOptions,
    inputs: DataOptions,
    retain: Annotated[Optional[Path], typer.Option(help="Documents to keep (needed by --retain-loss nll or kl).")] = None,
    train_data: Annotated[Optional[Path], typer.Option(
        help="The model's training data: forget documents not in it are named in a warning.")] = None,
    method: str = typer.Option("npo", help="ga, npo, simnpo (forget losses) or task_vector, whp (model arithmetic)."),
    retain_loss: str = typer.Option("none", help="none, nll (GD) or kl (KL to the original model)."),
    lr: float = typer.Option(1e-5, help="AdamW learning rate (1e-5: the 7B recipe; small models need more)."),
    epochs: int = typer.Option(5, min=1, help="Passes over the forget set."),
    batch_size: int = typer.Option(4, min=1, help="Forget documents per micro-batch (and as many retain documents)."),
    grad_accum: int = typer.Option(1, min=1, help="Micro-batches per optimiser step."),
    forget_weight: float = typer.Option(1.0, help="Weight of the forget loss."),
    retain_weight: float = typer.Option(1.0, help="Weight of the retain loss."),
    lora_r: int = typer.Option(0, min=0, help="LoRA rank (0: full fine-tuning). Adapters are merged into model/."),
    lora_alpha: int = typer.Option(16, min=1, help="LoRA alpha."),
    lora_targets: Optional[str] = typer.Option(None, help="Comma-separated module names for LoRA (default: peft's)."),
    dtype: str = typer.Option("float32", help="float32, or bfloat16 mixed precision."),
    alpha: float = typer.Option(1.0, help="alpha of task_vector and whp."),
    beta: Optional[float] = typer.Option(None, help="beta of npo / simnpo (default 0.1 / 2.5)."),
    max_length: Optional[int] = typer.Option(None, help="Longest document in tokens with BOS (default: the "
                                                        "model's context); a longer one is an error."),
    ref_logprobs: str = typer.Option("cached", help="NPO's reference: cached (once, before training) or "
                                                   "recompute (a frozen copy every step; for cost comparisons)."),
    seed: int = typer.Option(0, help="Seeds adapters, shuffling and the retain pairing."),
) -> None:
    """Unlearn a forget set: fine-tune with a forget loss and a retain regulariser, or by model arithmetic."""
    from lmaudit.unlearning.train import UnlearnConfig, check_ids, not_in_training_data, unlearn_to_dir

    started = time.time()
    start_run(out)  # from here on, a failure leaves no earlier result looking current
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    try:
        config = UnlearnConfig(method=method, retain_loss=retain_loss, forget_weight=forget_weight,
                               retain_weight=retain_weight, lr=lr, epochs=epochs, batch_size=batch_size,
                               grad_accum=grad_accum, lora_r=lora_r, lora_alpha=lora_alpha,
                               lora_target_modules=targets,
                               dtype=dtype, alpha=alpha, beta=beta, seed=seed, max_length=max_length,
                               ref_logprobs=ref_logprobs)
    except (KeyError, ValueError) as err:
        fail(str(err).strip('"'))
    if config.retain_loss != "none" and retain is None:
        fail(f"--retain-loss {retain_loss} needs --retain")
    forget_records, entry = inputs.read(forget, role="forget")
    entries = [entry]
    retain_records = None
    if retain is not None and config.retain_loss == "none":
        hint = "leave out --retain" if config.arithmetic else "add --retain-loss nll or kl, or leave out --retain"
        fail(f"--retain {retain} is given but --retain-loss is none: it would be read and not used; {hint}")
    if retain is not None:
        retain_records, retain_entry = inputs.read(retain, role="retain")
        entries.append(retain_entry)
    try:
        check_ids(forget_records, retain_records)
    except ValueError as err:
        fail(str(err))
    if train_data is not None:
        train_records, train_entry = inputs.read(train_data, role="training data")
        entries.append(train_entry)
        missing = not_in_training_data(forget_records, train_records)
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            # On stderr even with --quiet: the request may name text the model never trained on.
            console.print(f"[bold yellow]warning:[/] {len(missing)} of {len(forget_records)} forget documents are not "
                          f"in {train_data}: {shown}", highlight=False, soft_wrap=True)
    lm = model.load()  # float32 weights on the CPU; accelerate moves them to its device
    if not hasattr(lm, "model"):
        fail(f"--model {model.model} is an inference-time combination ({type(lm).__name__}), not a set of weights "
             "to unlearn from: unlearn its base or its reinforced model instead")
    try:
        r = unlearn_to_dir(lm.model, lm.tokenizer, forget_records, retain_records, out, config, base_path=model.model,
                           data=entries, command=command_line(), started=started, log=say)
    except ValueError as err:
        fail(str(err))
    s = r["summary"]
    say(f"{s['steps']} steps on {s['n_forget']} forget documents: forget loss {s['final_forget_loss']}, "
        f"retain loss {s['final_retain_loss']}")
    say(f"unlearned model in {s['model']}, results in {out}/results.json")
    print_summary(s)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLE)(unlearn)
