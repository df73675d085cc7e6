"""Radioactivity's ground truth on the testbed: two fine-tuned copies of the target, one on
watermarked text and one on unwatermarked text of the same prompts.

The testbed's non-members (documents the target never saw) give the prompts: each one's
first ``prompt_tokens`` tokens. The target continues each prompt twice under the same
sampling, once watermarked under the data owner's key and once without; a copy of the target
is fine-tuned on (prompt + watermarked continuation), another on (prompt + unwatermarked
continuation), with the same recipe, order and seed. The first should test radioactive
(Sander et al. 2024), the second, the control, should not.

Written to ``DIR`` (``<testbed>/radioactive`` in the demo), ``radioactive.json`` last, so a
folder without it holds no finished pair:

- ``watermark.json``: the watermark configuration (the key is not written);
- ``data/watermarked.jsonl`` and ``data/plain.jsonl``: id, text (prompt + continuation),
  prompt; the data owner's texts and the control's;
- ``watermarked/`` and ``control/``: the two fine-tuned models with the target's tokenizer;
- ``radioactive.json``: the settings, the target's fingerprint, and what generation and each
  fine-tuning cost.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lmaudit.models.base import GenerationConfig
from lmaudit.testbed.train import TrainConfig, train

RECORD = "radioactive.json"
_OURS = {RECORD, "watermark.json", "data", "watermarked", "control", f"{RECORD}.partial"}


@dataclass(frozen=True)
class RadioactiveConfig:
    """How the pair is made.

    Attributes:
        n_texts: Prompts (the first non-members).
        prompt_tokens: Prompt length, in tokens after BOS.
        new_tokens: Tokens generated per prompt.
        temperature: Sampling temperature of both generations.
        preset, gamma, delta: The watermark (:data:`lmaudit.watermark.config.PRESETS`).
        lr, epochs, batch_size, warmup_steps: The fine-tuning recipe (both copies).
        seed: Seeds sampling and fine-tuning.
    """

    n_texts: int = 400
    prompt_tokens: int = 16
    new_tokens: int = 64
    temperature: float = 1.0
    preset: str = "selfhash"
    gamma: float = 0.25
    delta: float = 2.0
    lr: float = 1e-3
    epochs: int = 3
    batch_size: int = 16
    warmup_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_texts", "prompt_tokens", "new_tokens", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def load_pair(folder: str | Path, *, target_fingerprint: str | None = None, key: int | None = None,
              config: RadioactiveConfig | None = None) -> dict | None:
    """The finished pair's record, or None when ``folder`` holds none, or one made from another
    target, key or config."""
    from lmaudit.watermark.config import key_id

    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if target_fingerprint is not None and record.get("target_fingerprint") != target_fingerprint:
        return None
    if key is not None and record.get("key_id") != key_id(key):
        return None
    if config is not None and record.get("config") != asdict(config):
        return None
    return record


def build_pair(lm, nonmembers, folder: str | Path, *, key: int, config: RadioactiveConfig = RadioactiveConfig(),
               say=lambda s: None) -> dict:
    """Make the pair (module docstring) from the target ``lm`` and the testbed's non-member
    records; reuse a finished one made the same way. A folder holding anything lmaudit did
    not write here is refused, never emptied."""
    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.processor import generate

    folder = Path(folder)
    found = load_pair(folder, target_fingerprint=lm.fingerprint(), key=key, config=config)
    if found is not None:
        return found
    if folder.exists():
        strays = sorted(p.name for p in folder.iterdir() if p.name not in _OURS)
        if strays or folder.is_symlink() or not folder.is_dir():
            raise ValueError(f"{folder} holds files lmaudit did not write there ({', '.join(strays[:5])}): move them "
                             "or choose another folder")
        shutil.rmtree(folder)  # an unfinished or outdated pair of ours
    if len(nonmembers) < config.n_texts:
        raise ValueError(f"{config.n_texts} prompts asked, but only {len(nonmembers)} non-members")
    started = time.time()
    (folder / "data").mkdir(parents=True)
    records = nonmembers[: config.n_texts]
    from lmaudit.watermark.run import prompts_of

    _, prompts, short = prompts_of(lm, records, config.prompt_tokens)
    if short:
        raise ValueError(f"documents shorter than the {config.prompt_tokens}-token prompt: "
                         f"{', '.join(str(e['id']) for e in short[:5])}")
    wcfg = WatermarkConfig.create(lm, key, preset=config.preset, gamma=config.gamma, delta=config.delta)
    gen = GenerationConfig(max_new_tokens=config.new_tokens, do_sample=True, temperature=config.temperature,
                           stop_at_eos=False, seed=config.seed)
    say(f"generating {len(prompts)} watermarked ({config.preset}) and {len(prompts)} unwatermarked continuations")
    t0 = time.time()
    texts = {"watermarked": generate(lm, prompts, wcfg, key, generation=gen),
             "plain": generate(lm, prompts, None, generation=gen)}
    generation_s = time.time() - t0
    for name, gens in texts.items():
        with open(folder / "data" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r, p, g in zip(records, prompts, gens):
                f.write(json.dumps({"id": r.id, "text": lm.decode(p[1:] + g), "prompt": lm.decode(p[1:])}) + "\n")
    wcfg.save(folder / "watermark.json")
    recipe = TrainConfig(lr=config.lr, epochs=config.epochs, batch_size=config.batch_size,
                         warmup_steps=config.warmup_steps)
    training = {}
    for name, data in (("watermarked", "watermarked"), ("control", "plain")):
        say(f"fine-tuning a copy of the target on the {data} texts")
        copy = type(lm).from_pretrained(lm.name, device="cpu")
        sequences = [p + g + [lm.eos_token_id] for p, g in zip(prompts, texts[data])]
        training[name] = train(copy.model, sequences, recipe, seed=config.seed, pad_token_id=copy.pad_token_id)
        copy.model.save_pretrained(folder / name, safe_serialization=True)
        for path in Path(lm.name).iterdir():  # the target's tokenizer files, byte for byte
            if path.name.startswith(("tokenizer", "special_tokens_map")):
                shutil.copyfile(path, folder / name / path.name)
    record = {"config": asdict(config), "key_id": wcfg.key_id, "watermark": wcfg.to_dict(),
              "target": lm.name, "target_fingerprint": lm.fingerprint(), "recipe": asdict(recipe),
              "generation_s": round(generation_s, 2), "training": training,
              "wall_time_s": round(time.time() - started, 2)}
    tmp = folder / f"{RECORD}.partial"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, folder / RECORD)
    return record
