"""Build the offline testbed: corpus → member/non-member split → tokenizer → model → measurements.

The testbed is lmaudit's ground truth: which documents the model trained on, how often,
and how strongly it memorised them, all known and written to ``testbed.json``.

A build writes, in its directory:

- ``model/``: the trained model and its tokenizer, in Hugging Face format.
- ``data/members.jsonl``: the documents it trained on (``id``, ``text``, ``duplication``, ``facts``).
- ``data/nonmembers.jsonl``: documents it never saw (``id``, ``text``, ``facts``).
- ``data/variants/{members,nonmembers}.v{j}.jsonl``, j = 1..``n_variants``: private
  re-wordings of every document (``id``, ``text``, ``variant``), same ids and order; variant 0
  is the published text above, and the model never sees any other.
- ``data/reference.jsonl``: a further sample from the generator, in neither split
  (``id`` = ``ref-00000``…, ``text``, ``facts``).
- ``data/knowledge/{members,nonmembers}.jsonl``: cloze questions about each document's facts
  (``id`` = ``{doc_id}/{kind}``, ``question``, ``answer``, ``kind``, ``doc_id``, ``verbatim``, and
  ``duplication`` for members), and ``data/knowledge/shots.jsonl``: worked examples about people
  of the reference sample. See :func:`lmaudit.testbed.corpus.knowledge_questions`.
- ``testbed.json``: configuration, measurements and fingerprints of all the above; written last
  (until then it marks an unfinished build, see :mod:`lmaudit.testbed.folder`).

With ``forget=N`` (a forget split, for unlearning; without it none of the following is written
and everything above is the same, bit for bit):

- ``retrain/``: a model trained on the members minus the forget set F, with the target's recipe,
  seed and initial weights (the reference an unlearned model is judged against), and its tokenizer.
- ``data/forget.jsonl``, ``data/retain.jsonl``: F (N members, stratified over duplication levels,
  :func:`lmaudit.testbed.forget.select_forget`) and R (the other members), keys as members.jsonl.
- ``data/knowledge/{forget,retain,holdout}.jsonl``: the knowledge questions of F, R and the
  non-members H, keys as knowledge/members.jsonl plus ``paraphrased_answer`` and
  ``perturbed_answers`` (3) for TOFU's truth ratio
  (:func:`lmaudit.testbed.corpus.truth_ratio_answers`).
- testbed.json's ``"forget"``: how F was drawn, the retrain model's training figures and
  fingerprint, and both models' loss, extraction and knowledge on F, R and H.

With ``goldfish=(k, h)`` or a :class:`~lmaudit.takedown.goldfish.GoldfishConfig` (issue 14; again
without it nothing of this is written and the rest is the same, bit for bit):

- ``goldfish/``: a model trained with the goldfish loss (Hans et al. 2024) on the target's
  training sequences, with its recipe, seed and initial weights: only the loss differs (the
  targets :func:`~lmaudit.takedown.goldfish.goldfish_mask` drops are left out), and its tokenizer.
- testbed.json's ``"goldfish"``: the goldfish configuration, the goldfish model's training
  figures and fingerprint, and both models side by side
  (:func:`lmaudit.testbed.goldfish.measure_goldfish`): exact extraction and ROUGE-L of the
  continuation, loss on all tokens and on the kept tokens, and the loss attack's ROC-AUC.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lmaudit.data import Record, data_fingerprint
from lmaudit.report.results import environment
from lmaudit.takedown.goldfish import GoldfishConfig
from lmaudit.testbed.corpus import generate_corpus, knowledge_questions, rewrite
from lmaudit.testbed.folder import BUILT_DIRS, check_buildable, mark_unfinished
from lmaudit.testbed.forget import SETS, measure_forget, select_forget, with_truth_ratio_answers
from lmaudit.testbed.goldfish import measure_goldfish
from lmaudit.testbed.measure import measure
from lmaudit.testbed.tokenizer import train_tokenizer
from lmaudit.testbed.train import TrainConfig, build_model, train

# Bump whenever the corpus, the split or training changes, so an older testbed on disk is
# rebuilt instead of reused.
TESTBED_SCHEMA_VERSION = 4

# Non-member shifts: name -> the non-members' birth years. Every date in a biography follows
# from the birth year, so a model-free classifier on dates alone separates the splits: the
# flaw of MIA benchmarks built from differently dated data (Duan et al. 2024; Das et al. 2024,
# "Blind Baselines Beat Membership Inference Attacks for Foundation Models").
SHIFTS: dict[str, tuple[int, int]] = {"era": (1985, 2010)}


@dataclass(frozen=True)
class TestbedConfig:
    """Everything that determines a testbed, besides the seed.

    Attributes:
        n_members: Documents the model trains on.
        n_nonmembers: Documents from the same distribution that it never sees.
        vocab_size: BPE vocabulary size, special tokens included.
        n_tokenizer_docs: Documents of a separate sample from the same generator that the
            tokenizer is trained on. Training it on the members would leak membership
            through tokenisation alone (members split into fewer tokens: a blind classifier
            on token counts reached AUC 0.56-0.59), so it sees neither split.
        min_tokens: Every document has at least this many tokens (short ones, member or not,
            get one more sentence of their own facts).
        duplication: (copies, fraction of members) pairs: how many times a member appears
            in the training data. Memorization grows with duplication (Kandpal et al. 2022),
            so a mix gives members that are easy, hard and nearly impossible to detect.
        prefix_tokens: Prompt length of the extraction test.
        continuation_tokens: Tokens that must be reproduced exactly.
        train: Model shape and optimisation.
        n_variants: Private versions written of every member and non-member: the same facts
            in other sentence frames and order, never trained on, lengthened like the
            originals. Paired tests such as STAMP (Rastogi et al. 2025) compare the model on
            the published version (variant 0) against these.
        n_reference_docs: Documents of another separate sample from the generator (neither
            split, nor the tokenizer sample; any text equal to a member's or non-member's, or
            to one of their variants, is dropped): token frequencies for DC-PDD (Zhang et al.
            2024) and the like.
        nonmember_shift: None: members and non-members come from one distribution. A key of
            :data:`SHIFTS`: the non-members are other people from a shifted distribution,
            a control on which model-free classifiers succeed. Members, tokenizer and model
            are the same as without the shift.
    """

    n_members: int = 1000
    n_nonmembers: int = 1000
    vocab_size: int = 2048
    n_tokenizer_docs: int = 1000
    min_tokens: int = 64
    duplication: tuple[tuple[int, float], ...] = ((1, 0.45), (4, 0.15), (32, 0.4))
    prefix_tokens: int = 32
    continuation_tokens: int = 32
    train: TrainConfig = field(default_factory=TrainConfig)
    n_variants: int = 3
    n_reference_docs: int = 1000
    nonmember_shift: str | None = None

    def __post_init__(self) -> None:
        if self.nonmember_shift is not None and self.nonmember_shift not in SHIFTS:
            raise ValueError(f"unknown non-member shift {self.nonmember_shift!r}: use one of {', '.join(SHIFTS)} or None")


SIZES = {
    "default": TestbedConfig(),
    # Small enough to build in seconds inside tests; it still memorises its 16x members.
    "tiny": TestbedConfig(
        n_members=64,
        n_nonmembers=64,
        vocab_size=512,
        n_tokenizer_docs=128,
        n_reference_docs=128,
        duplication=((1, 0.5), (16, 0.5)),
        train=TrainConfig(hidden_size=64, n_layers=2, n_heads=2, batch_size=16, lr=1e-2, warmup_steps=10, epochs=3),
    ),
}


def _duplication_levels(cfg: TestbedConfig, rng: random.Random) -> list[int]:
    levels: list[int] = []
    for copies, fraction in cfg.duplication:
        levels += [copies] * round(fraction * cfg.n_members)
    levels = (levels + [cfg.duplication[0][0]] * cfg.n_members)[: cfg.n_members]
    rng.shuffle(levels)
    return levels


def _ensure_min_tokens(rows: list[dict], tokenizer, min_tokens: int, rng: random.Random) -> None:
    """Lengthen documents shorter than ``min_tokens`` with one more sentence of their own facts."""
    for row in rows:
        while len(tokenizer(row["text"], add_special_tokens=False)["input_ids"]) < min_tokens:
            f = row["facts"]
            row["text"] += rng.choice([
                f" A collection of {f['name'].split()[0]}'s letters is kept in {f['birth_city']}.",
                f" {f['name']} often spoke of a childhood in {f['country']}.",
            ])


def _variants(rows: list[dict], k: int, seed: int) -> list[list[dict]]:
    """k private re-wordings of every row: a list over j = 1..k of rows like ``rows``.

    Each (variant, id) has its own stream, so a variant does not depend on how many others
    were drawn, and each differs from the published text and from the earlier variants.
    """
    variants: list[list[dict]] = [[] for _ in range(k)]
    for row in rows:
        seen = {row["text"]}
        for j in range(1, k + 1):
            text = rewrite(row["facts"], random.Random(f"{seed}/variants/{j}/{row['id']}"), avoid=seen)
            seen.add(text)
            variants[j - 1].append({"id": row["id"], "text": text, "variant": j, "facts": row["facts"]})
    return variants


def _knowledge(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        for q in knowledge_questions(r["text"], r["facts"]):
            extra = {"duplication": r["duplication"]} if "duplication" in r else {}
            out.append({"id": f"{r['id']}/{q['kind']}", **q, "doc_id": r["id"], **extra})
    return out


def _shots(reference: list[dict]) -> list[dict]:
    """One worked example per question kind, each about another person of the reference sample."""
    kinds = [q["kind"] for q in knowledge_questions(reference[0]["text"], reference[0]["facts"])]
    return [{**q, "id": f"{r['id']}/{q['kind']}", "doc_id": r["id"]}
            for r, kind in zip(reference, kinds)
            for q in knowledge_questions(r["text"], r["facts"]) if q["kind"] == kind]


def _write_jsonl(path: Path, rows: list[dict], keys: tuple[str, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in keys if k in r}, ensure_ascii=False) + "\n")


def _write_files(out: Path, files: dict[str, list[dict]]) -> None:
    for name, file_rows in files.items():
        # A variant's facts are its variant 0's, under the same id.
        keys = ("id", "text", "variant") if name.startswith("variants/") else ("id", "text", "duplication", "facts")
        if name.startswith("knowledge/"):
            keys = ("id", "question", "answer", "kind", "doc_id", "duplication", "verbatim",
                    "paraphrased_answer", "perturbed_answers")
        _write_jsonl(out / "data" / f"{name}.jsonl", file_rows, keys)


def _fingerprint(out: Path, name: str) -> dict:
    # Paths relative to the testbed, and no absolute ones: a moved or copied testbed is the same testbed.
    fp = data_fingerprint(out / "data" / f"{name}.jsonl")
    return {k: v for k, v in fp.items() if k != "abs_path"} | {"path": f"data/{name}.jsonl"}


def _retrain_plan(members: list[dict], encoded: list[list[int]], forget: int, *, seed: int, bos: int,
                  eos: int) -> tuple[set[str], dict, list[list[int]]]:
    """F's ids, how F was drawn, and the retrain model's training sequences."""
    records = [Record(id=r["id"], text=r["text"], source="data/members.jsonl", line=i + 1,
                      meta={"duplication": r["duplication"]}) for i, r in enumerate(members)]
    forget_records, _, selection = select_forget(records, forget, seed=seed)
    forget_ids = {r.id for r in forget_records}
    # The target's list in the target's order, less every copy of F: the only difference.
    sequences = [[bos, *ids, eos] for ids, r in zip(encoded, members) if r["id"] not in forget_ids
                 for _ in range(r["duplication"])]
    return forget_ids, selection, sequences


def _train_retrain(out: Path, cfg: TestbedConfig, tokenizer, sequences: list[list[int]], *, seed: int, log,
                   checkpoint_every: int, folder: str = "retrain", goldfish: GoldfishConfig | None = None) -> dict:
    """Train and save (``out/retrain/``) the retrain model: the target's recipe and initial weights.
    With ``folder="goldfish"`` and ``goldfish``: the goldfish model, in ``out/goldfish/``."""
    import torch

    torch.manual_seed(seed)  # as before the target's build_model: the same initial weights
    model = build_model(cfg.train, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    training = train(model, sequences, cfg.train, seed=seed, pad_token_id=tokenizer.pad_token_id, log=log,
                     checkpoint=out / f"{folder}-checkpoint.pt", checkpoint_every=checkpoint_every, goldfish=goldfish)
    model.save_pretrained(out / folder, safe_serialization=True)
    return training


def goldfish_config(goldfish: GoldfishConfig | tuple | list | None) -> GoldfishConfig | None:
    """``goldfish`` as a :class:`GoldfishConfig`: given as one, or as (k,) or (k, h) (the hash
    scheme, key 0); None stays None. Raises ValueError on anything else."""
    if goldfish is None or isinstance(goldfish, GoldfishConfig):
        return goldfish
    if isinstance(goldfish, (tuple, list)) and len(goldfish) in (1, 2):
        return GoldfishConfig(*goldfish)
    raise ValueError(f"goldfish must be a GoldfishConfig or (k, h), got {goldfish!r}")


def _goldfish_record(out: Path, lm, cfg: TestbedConfig, goldfish: GoldfishConfig, *, sequences: list[list[int]],
                     training: dict, members: list[dict], nonmembers: list[dict], seed: int) -> dict:
    """testbed.json's ``"goldfish"``: the configuration, the goldfish model's training, both models measured."""
    from lmaudit.models.hf import HFModel

    glm = HFModel.from_pretrained(str(out / "goldfish"), device="cpu")
    return {
        "config": goldfish.to_dict(),
        "model": {"path": "goldfish", "sequences": len(sequences), **training, "model_fingerprint": glm.fingerprint()},
        "measured": measure_goldfish({"standard": lm, "goldfish": glm}, members, nonmembers, cfg, goldfish, seed=seed),
    }


def _add_goldfish(out: Path, info: dict, goldfish: GoldfishConfig, *, cfg: TestbedConfig, seed: int, say, on_step,
                  checkpoint_every: int) -> dict | None:
    """Add (or replace) the goldfish model of the complete testbed in ``out`` (``info``: its
    testbed.json) without training its target again; everything else, a forget split included,
    is kept. None when the saved model or tokenizer do not match testbed.json (the caller rebuilds)."""
    from transformers import AutoTokenizer

    from lmaudit.models.hf import HFModel

    started = time.time()
    lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    if (lm.fingerprint(), lm.tokenizer_fingerprint()) != (info["model_fingerprint"], info["tokenizer_fingerprint"]):
        return None
    say(f"adding a goldfish model (k={goldfish.k}, h={goldfish.h}) to the complete testbed in {out} "
        "(its model is kept)")

    def read(name: str) -> list[dict]:
        return [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]

    members, nonmembers = read("members"), read("nonmembers")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")  # as saved by the build, untouched
    encoded = tokenizer([r["text"] for r in members], add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    sequences = [[bos, *ids, eos] for ids, r in zip(encoded, members) for _ in range(r["duplication"])]
    if info.get("goldfish"):
        # Replacing another goldfish model: testbed.json stops naming the old one before its folder
        # goes, so a kill from here on leaves a complete testbed without a goldfish model, never a
        # record of one model beside the folder of another (or of none).
        info = {k: v for k, v in info.items() if k != "goldfish"}
        _write_info(out, info)
    shutil.rmtree(out / "goldfish", ignore_errors=True)
    say(f"training the goldfish model on {len(sequences)} sequences (the target's, goldfish loss)")

    def log(step: int, total: int, loss: float) -> None:
        if on_step:
            on_step(step, total)
        if step % 100 == 0:
            say(f"step {step}/{total} loss {loss:.3f}")

    training = _train_retrain(out, cfg, tokenizer, sequences, seed=seed, log=log, checkpoint_every=checkpoint_every,
                              folder="goldfish", goldfish=goldfish)
    for path in (out / "model").iterdir():  # the target's tokenizer files, byte for byte
        if path.name.startswith(("tokenizer", "special_tokens_map")):
            shutil.copyfile(path, out / "goldfish" / path.name)
    say("measuring the standard and the goldfish model side by side")
    record = _goldfish_record(out, lm, cfg, goldfish, sequences=sequences, training=training, members=members,
                              nonmembers=nonmembers, seed=seed)
    info = {**info, "goldfish": record | {"added_to_built_testbed": True, "wall_time_s": round(time.time() - started, 2)}}
    text = _write_info(out, info)
    (out / "goldfish-checkpoint.pt").unlink(missing_ok=True)
    return json.loads(text)


def _write_info(out: Path, info: dict) -> str:
    """Write testbed.json under a temporary name, then move it into place (the testbed stays
    complete and valid throughout); returns the text written."""
    text = json.dumps(info, indent=2) + "\n"
    tmp = out / "testbed.json.partial"
    tmp.write_text(text)
    os.replace(tmp, out / "testbed.json")
    return text


def _forget_files(members: list[dict], nonmembers: list[dict], forget_ids: set[str], *,
                  seed: int) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The documents of F, R and H, and the split's data files (name -> rows)."""
    sets = {"forget": [r for r in members if r["id"] in forget_ids],
            "retain": [r for r in members if r["id"] not in forget_ids], "holdout": nonmembers}
    facts = {r["id"]: r["facts"] for r in members + nonmembers}
    files = {"forget": sets["forget"], "retain": sets["retain"]}
    files |= {f"knowledge/{name}": with_truth_ratio_answers(_knowledge(rows), facts, seed=seed)
              for name, rows in sets.items()}
    return sets, files


def _forget_record(out: Path, lm, cfg: TestbedConfig, *, selection: dict, sequences: list[list[int]],
                   retraining: dict, sets: dict, files: dict, seed: int, known: dict | None = None) -> dict:
    """testbed.json's ``"forget"``: the draw, the retrain model's training, both models measured."""
    from lmaudit.models.hf import HFModel

    rlm = HFModel.from_pretrained(str(out / "retrain"), device="cpu")
    return {
        "selection": selection,
        "retrain": {"path": "retrain", "sequences": len(sequences), **retraining, "model_fingerprint": rlm.fingerprint()},
        "measured": measure_forget({"target": lm, "retrain": rlm}, sets, {name: files[f"knowledge/{name}"] for name in SETS},
                                   files["knowledge/shots"], cfg, seed=seed, known=known),
    }


def _add_forget(out: Path, info: dict, forget: int, *, cfg: TestbedConfig, seed: int, say, on_step,
                checkpoint_every: int) -> dict | None:
    """Add a forget split to the complete testbed in ``out`` (``info``: its testbed.json) without
    training its target again; what it writes is what a build with ``forget`` writes. None when
    the saved model or tokenizer do not match testbed.json (the caller rebuilds)."""
    from transformers import AutoTokenizer

    from lmaudit.models.hf import HFModel

    started = time.time()
    lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    if (lm.fingerprint(), lm.tokenizer_fingerprint()) != (info["model_fingerprint"], info["tokenizer_fingerprint"]):
        return None
    say(f"adding a forget split of {forget} members to the complete testbed in {out} (its model is kept)")

    def read(name: str) -> list[dict]:
        return [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]

    members, nonmembers = read("members"), read("nonmembers")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")  # as saved by the build, untouched
    encoded = tokenizer([r["text"] for r in members], add_special_tokens=False)["input_ids"]
    forget_ids, selection, sequences = _retrain_plan(members, encoded, forget, seed=seed, bos=tokenizer.bos_token_id,
                                                     eos=tokenizer.eos_token_id)
    shutil.rmtree(out / "retrain", ignore_errors=True)
    say(f"training the retrain model on {len(sequences)} sequences (members minus {forget} to forget)")

    def log(step: int, total: int, loss: float) -> None:
        if on_step:
            on_step(step, total)
        if step % 100 == 0:
            say(f"step {step}/{total} loss {loss:.3f}")

    retraining = _train_retrain(out, cfg, tokenizer, sequences, seed=seed, log=log, checkpoint_every=checkpoint_every)
    for path in (out / "model").iterdir():  # the target's tokenizer files, byte for byte
        if path.name.startswith(("tokenizer", "special_tokens_map")):
            shutil.copyfile(path, out / "retrain" / path.name)
    sets, files = _forget_files(members, nonmembers, forget_ids, seed=seed)
    _write_files(out, files)
    say("measuring the target and the retrain model on the forget, retain and holdout sets")
    per_row: dict[str, dict] = {}
    measure(lm, members, nonmembers, cfg, per_row=per_row)  # batched as in a build: the same figures
    record = _forget_record(out, lm, cfg, selection=selection, sequences=sequences, retraining=retraining, sets=sets,
                            files={**files, "knowledge/shots": read("knowledge/shots")}, seed=seed,
                            known={"target": per_row})
    info = {**info, "data": info["data"] | {name: _fingerprint(out, name) for name in files},
            "forget": record | {"added_to_built_testbed": True, "wall_time_s": round(time.time() - started, 2)}}
    text = _write_info(out, info)
    (out / "retrain-checkpoint.pt").unlink(missing_ok=True)
    return json.loads(text)


def build_testbed(out: str | Path, *, seed: int = 0, size: str = "default", shift: str | None = None,
                  config: TestbedConfig | None = None, forget: int | None = None,
                  goldfish: GoldfishConfig | tuple[int, ...] | None = None, log=None, on_step=None,
                  checkpoint_every: int = 100) -> dict:
    """Generate, train, save and measure a testbed in ``out``; returns testbed.json's content.

    ``testbed.json`` says ``"complete": true`` only once the build has finished. A folder that
    is neither missing, empty nor a testbed is refused before anything in it is deleted.

    Args:
        out: Directory to (re)build in.
        seed: Seed of the corpus, the split, the tokenizer sample, duplication and training.
        size: A key of :data:`SIZES`, unless ``config`` is given.
        shift: A key of :data:`SHIFTS`: draw the non-members from a shifted distribution
            (sets the configuration's ``nonmember_shift``).
        config: A custom configuration (recorded as size "custom").
        forget: Also build a forget split of this many members (1 <= N < members) and a retrain
            model on the others (see the module docstring). None: no split, and the build is
            the same, bit for bit, as it would be without this option. On a complete testbed
            of the same seed, size and shift without a split, the split is added to it (its
            target is not trained again; the result is the same as a build from nothing).
        goldfish: Also train a goldfish model (``(k, h)`` or a :class:`GoldfishConfig`; see the
            module docstring) in ``goldfish/``. None: none, and the build is the same, bit for
            bit. On a complete testbed of the same seed, size and shift without it (or with
            another goldfish configuration), only the goldfish model is trained and measured;
            its target, files and forget split are kept.
        log: Called with progress messages.
        on_step: Called with (step, total_steps) during training.
        checkpoint_every: Training steps between checkpoints (``out/train-checkpoint.pt``, and
            ``out/retrain-checkpoint.pt`` and ``out/goldfish-checkpoint.pt`` for the retrain and
            goldfish models): a build killed during training
            resumes from the last one when run again with the same arguments, and gives the
            same model bit for bit. Removed once the build ends.

    Raises:
        NotATestbedError: ``out`` holds files that lmaudit did not write.
        ValueError: ``forget`` is not between 1 and the number of members minus 1, or
            ``goldfish`` is not a valid configuration.
    """
    from lmaudit.models.hf import HFModel

    cfg = config or SIZES[size]
    if shift is not None:
        cfg = replace(cfg, nonmember_shift=shift)  # validates it before anything is deleted
    if forget is not None and not 1 <= forget < cfg.n_members:
        raise ValueError(f"a forget set must hold at least 1 member and leave at least 1 to retain: "
                         f"1 <= N < {cfg.n_members} (the members), got {forget}")
    gcfg = goldfish_config(goldfish)  # validated before anything is deleted
    out = Path(out)
    started = time.time()
    say = log or (lambda msg: None)
    check_buildable(out)  # never delete what lmaudit did not create
    if (forget is not None or gcfg is not None) and config is None:
        built = load_complete(out, seed=seed, size=size, shift=cfg.nonmember_shift)
        if built is not None:
            # Add what is missing (or, for goldfish, different) when all else asked for is there.
            add_forget = forget is not None and not built.get("forget")
            add_goldfish = gcfg is not None and (built.get("goldfish") or {}).get("config") != gcfg.to_dict()
            forget_ok = forget is None or add_forget or built["forget"].get("selection", {}).get("n") == forget
            if not (add_forget or add_goldfish) and forget_ok:
                # Everything asked for is there: rebuilding would drop what was added to it (a
                # forget split, another model) and train the target again for nothing.
                say(f"the complete testbed in {out} already has what was asked for; nothing to do")
                return built
            if (add_forget or add_goldfish) and forget_ok:
                added = built
                if add_forget:
                    added = _add_forget(out, added, forget, cfg=cfg, seed=seed, say=say, on_step=on_step,
                                        checkpoint_every=checkpoint_every)
                if added is not None and add_goldfish:
                    added = _add_goldfish(out, added, gcfg, cfg=cfg, seed=seed, say=say, on_step=on_step,
                                          checkpoint_every=checkpoint_every)
                if added is not None:
                    return added
    mark_unfinished(out, schema_version=TESTBED_SCHEMA_VERSION)  # from now on this directory is unfinished
    for sub in BUILT_DIRS:
        shutil.rmtree(out / sub, ignore_errors=True)

    say(f"generating {cfg.n_members + cfg.n_nonmembers} documents")
    # Each stage draws from its own stream, so e.g. the split does not depend on the content.
    rows = generate_corpus(cfg.n_members + cfg.n_nonmembers, seed=f"{seed}/corpus")
    # Ids are assigned before the split, in generation order, so they say nothing about membership.
    for i, row in enumerate(rows):
        row["id"] = f"bio-{i:05d}"
    order = list(range(len(rows)))
    random.Random(f"{seed}/split").shuffle(order)
    members = [rows[i] for i in sorted(order[: cfg.n_members])]
    nonmembers = [rows[i] for i in sorted(order[cfg.n_members :])]
    if cfg.nonmember_shift:
        # Other people under the same ids; members (hence tokenizer and model) stay as they are.
        shifted = generate_corpus(cfg.n_nonmembers, seed=f"{seed}/shift", birth_years=SHIFTS[cfg.nonmember_shift],
                                  avoid_names={r["facts"]["name"] for r in members})
        nonmembers = [{**new, "id": old["id"]} for old, new in zip(nonmembers, shifted)]
    # Re-worded before lengthening: compared after it, a variant could be variant 0 plus another sentence.
    variants = {"members": _variants(members, cfg.n_variants, seed), "nonmembers": _variants(nonmembers, cfg.n_variants, seed)}

    say("training tokenizer")
    tokenizer_docs = generate_corpus(cfg.n_tokenizer_docs, seed=f"{seed}/tokenizer")
    tokenizer = train_tokenizer([r["text"] for r in tokenizer_docs], vocab_size=cfg.vocab_size)
    # All unshifted rows, as without a shift, so the members are lengthened identically either way.
    _ensure_min_tokens(rows, tokenizer, cfg.min_tokens, random.Random(f"{seed}/lengthen"))
    if cfg.nonmember_shift:
        _ensure_min_tokens(nonmembers, tokenizer, cfg.min_tokens, random.Random(f"{seed}/shift/lengthen"))
    for name, split in variants.items():
        for j, version in enumerate(split, 1):  # a stream per file: variant j does not depend on n_variants
            _ensure_min_tokens(version, tokenizer, cfg.min_tokens, random.Random(f"{seed}/variants/{name}.v{j}/lengthen"))
    # Lengthened like the splits, so its token statistics are theirs.
    reference = generate_corpus(cfg.n_reference_docs, seed=f"{seed}/reference")
    _ensure_min_tokens(reference, tokenizer, cfg.min_tokens, random.Random(f"{seed}/reference/lengthen"))
    taken = {r["text"] for r in members + nonmembers} | {r["text"] for s in variants.values() for v in s for r in v}
    reference = [r for r in reference if r["text"] not in taken]
    for i, row in enumerate(reference):
        row["id"] = f"ref-{i:05d}"
    for row, copies in zip(members, _duplication_levels(cfg, random.Random(f"{seed}/duplication"))):
        row["duplication"] = copies

    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    encoded = tokenizer([r["text"] for r in members], add_special_tokens=False)["input_ids"]
    if max(len(x) for x in encoded) + 2 > cfg.train.context_length:
        raise ValueError("a document is longer than the testbed model's context; raise train.context_length")
    sequences = [[bos, *ids, eos] for ids, r in zip(encoded, members) for _ in range(r["duplication"])]
    if forget is not None:
        forget_ids, selection, retrain_sequences = _retrain_plan(members, encoded, forget, seed=seed, bos=bos, eos=eos)
        retrain_steps = math.ceil(len(retrain_sequences) / cfg.train.batch_size) * cfg.train.epochs
    else:
        retrain_steps = 0
    goldfish_steps = math.ceil(len(sequences) / cfg.train.batch_size) * cfg.train.epochs if gcfg is not None else 0

    say(f"training a {cfg.train.n_layers}-layer model on {len(sequences)} sequences")
    import torch

    torch.manual_seed(seed)
    model = build_model(cfg.train, vocab_size=len(tokenizer), bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    n_params = sum(p.numel() for p in model.parameters())
    def on_train_step(step: int, total: int, loss: float, *, before: int = 0,
                      after: int = retrain_steps + goldfish_steps) -> None:
        # With a retrain or goldfish model, one count over all trainings.
        if on_step:
            on_step(before + step, before + total + after)
        if step % 100 == 0:
            say(f"step {step}/{total} loss {loss:.3f}")

    # Checkpoints beside model/ and data/ (which a rebuild replaces): a killed build resumes
    # training where it stopped, with the same result bit for bit.
    checkpoint = out / "train-checkpoint.pt"
    training = train(model, sequences, cfg.train, seed=seed, pad_token_id=pad, log=on_train_step,
                     checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    if training["resumed_from_step"]:
        say(f"resumed training from step {training['resumed_from_step']} (checkpoint)")

    model.save_pretrained(out / "model", safe_serialization=True)
    tokenizer.save_pretrained(out / "model")
    if forget is not None:
        say(f"training the retrain model on {len(retrain_sequences)} sequences (members minus {forget} to forget)")
        retraining = _train_retrain(out, cfg, tokenizer, retrain_sequences, seed=seed, checkpoint_every=checkpoint_every,
                                    log=lambda s, t, loss: on_train_step(s, t, loss, before=training["steps"],
                                                                         after=goldfish_steps))
        if retraining["resumed_from_step"]:
            say(f"resumed the retrain model from step {retraining['resumed_from_step']} (checkpoint)")
        tokenizer.save_pretrained(out / "retrain")
    if gcfg is not None:
        say(f"training the goldfish model (k={gcfg.k}, h={gcfg.h}) on the same {len(sequences)} sequences")
        done = training["steps"] + (retraining["steps"] if forget is not None else 0)
        goldfish_training = _train_retrain(out, cfg, tokenizer, sequences, seed=seed, checkpoint_every=checkpoint_every,
                                           folder="goldfish", goldfish=gcfg,
                                           log=lambda s, t, loss: on_train_step(s, t, loss, before=done, after=0))
        if goldfish_training["resumed_from_step"]:
            say(f"resumed the goldfish model from step {goldfish_training['resumed_from_step']} (checkpoint)")
        tokenizer.save_pretrained(out / "goldfish")
    files = {"members": members, "nonmembers": nonmembers, "reference": reference}
    files |= {f"variants/{name}.v{j}": version for name, split in variants.items() for j, version in enumerate(split, 1)}
    files |= {"knowledge/members": _knowledge(members), "knowledge/nonmembers": _knowledge(nonmembers),
              "knowledge/shots": _shots(reference)}
    if forget is not None:
        sets, forget_files = _forget_files(members, nonmembers, forget_ids, seed=seed)
        files |= forget_files
    _write_files(out, files)

    say("measuring memorization")
    # Measure through the same loading path as any Hugging Face model.
    lm = HFModel.from_pretrained(str(out / "model"), device="cpu")
    per_row: dict[str, dict] = {}
    figures = measure(lm, members, nonmembers, cfg, per_row=per_row)
    lengths = [len(x) for x in lm.encode([r["text"] for r in members + nonmembers])]
    info = {
        "schema_version": TESTBED_SCHEMA_VERSION,
        "complete": True,
        "seed": seed,
        "size": size if config is None else "custom",
        "shift": cfg.nonmember_shift,
        "config": asdict(cfg),
        "n_members": len(members),
        "n_nonmembers": len(nonmembers),
        "doc_tokens": {"min": min(lengths), "mean": round(float(np.mean(lengths)), 2), "max": max(lengths)},
        "n_parameters": n_params,
        "epochs": cfg.train.epochs,
        **training,
        "measured": figures,
        "model_fingerprint": lm.fingerprint(),
        "tokenizer_fingerprint": lm.tokenizer_fingerprint(),
        # Paths relative to ``out``, so a moved testbed still checks out.
        # Paths relative to the testbed, and no absolute ones: a moved or copied testbed is the same testbed.
        "data": {name: _fingerprint(out, name) for name in files},
        "wall_time_s": round(time.time() - started, 2),
        "environment": environment(),
    }
    if forget is not None:
        say("measuring the target and the retrain model on the forget, retain and holdout sets")
        info["forget"] = _forget_record(out, lm, cfg, selection=selection, sequences=retrain_sequences,
                                        retraining=retraining, sets=sets, files=files, seed=seed,
                                        known={"target": per_row})
        info["wall_time_s"] = round(time.time() - started, 2)
    if gcfg is not None:
        say("measuring the standard and the goldfish model side by side")
        info["goldfish"] = _goldfish_record(out, lm, cfg, gcfg, sequences=sequences, training=goldfish_training,
                                            members=members, nonmembers=nonmembers, seed=seed)
        info["wall_time_s"] = round(time.time() - started, 2)
    text = json.dumps(info, indent=2) + "\n"
    (out / "testbed.json").write_text(text)
    checkpoint.unlink(missing_ok=True)  # the build is complete: nothing left to resume
    (out / "retrain-checkpoint.pt").unlink(missing_ok=True)
    (out / "goldfish-checkpoint.pt").unlink(missing_ok=True)
    return json.loads(text)  # exactly what a later reader sees (tuples become lists)


def load_complete(out: str | Path, *, seed: int, size: str, shift: str | None = None,
                  forget: int | None = None, goldfish: GoldfishConfig | tuple[int, ...] | None = None) -> dict | None:
    """testbed.json of a finished build in ``out`` that matches seed, size and shift and whose
    data files are unchanged, else None (the caller rebuilds).

    With ``forget=N`` only a build with a forget split of N members (and its retrain model)
    matches. Without it, a build with or without a forget split matches: the split changes
    neither the target model nor any file of a plain build, and its own files are checked too.
    Likewise ``goldfish`` matches only a build with a goldfish model of that configuration.
    """
    path = Path(out) / "testbed.json"
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if not info.get("complete") or (info.get("seed"), info.get("size"), info.get("shift")) != (seed, size, shift):
        return None
    if info.get("schema_version") != TESTBED_SCHEMA_VERSION:
        return None
    if info.get("config") != json.loads(json.dumps(asdict(replace(SIZES[size], nonmember_shift=shift)))):
        return None
    for fp in info.get("data", {}).values():
        file = Path(out) / fp["path"]
        if not file.exists() or data_fingerprint(file)["sha256"] != fp["sha256"]:
            return None
    if not (Path(out) / "model" / "model.safetensors").exists():
        return None
    if forget is not None:
        if (info.get("forget") or {}).get("selection", {}).get("n") != forget:
            return None
        if not (Path(out) / "retrain" / "model.safetensors").exists():
            return None
    gcfg = goldfish_config(goldfish)
    if gcfg is not None:
        if (info.get("goldfish") or {}).get("config") != gcfg.to_dict():
            return None
        if not (Path(out) / "goldfish" / "model.safetensors").exists():
            return None
    return info  # the caller still compares model and tokenizer fingerprints after loading


__all__ = ["TestbedConfig", "SIZES", "SHIFTS", "TESTBED_SCHEMA_VERSION", "build_testbed", "load_complete",
           "goldfish_config"]
