"""The model contract is what the audits call: a backend that implements only the core
Protocol runs every audit that needs nothing more, and is refused, before any work, by the
audits that need a capability it lacks; each capability added alone unlocks exactly its audits.

The backends here delegate member by member, so an audit that reached for anything outside
the contract (``model.model``, ``model.tokenizer``, ``hasattr`` probing) fails with an
AttributeError instead of passing by accident.
"""

import numpy as np
import pytest
import torch

from lmaudit.data import Record
from lmaudit.memorization.acr import ACRConfig, run_acr
from lmaudit.memorization.extraction import ExtractionConfig, run_extraction
from lmaudit.memorization.knowledge import KnowledgeConfig, run_knowledge
from lmaudit.membership.dataset_inference import DatasetInferenceConfig, run_dataset_inference
from lmaudit.membership.paired import run_paired_test
from lmaudit.membership.run import MembershipConfig, run_membership
from lmaudit.models.base import CapabilityError, GenerationConfig, has_capability
from lmaudit.models.fake import FakeLM
from lmaudit.scoring.score import score_records

MEMBERS = [f"Member {i} was born in {1900 + 7 * i} in Port {chr(65 + i)}ville and kept {i + 2} goats."
           for i in range(12)]
NONMEMBERS = [f"Outsider {i} moved in {1950 + 3 * i} to Lake {chr(75 + i)}ham with {i + 3} dogs."
              for i in range(12)]


class CoreOnly:
    """Exactly the core LanguageModel contract of another backend, and nothing else."""

    def __init__(self, inner):
        self._inner = inner
        self.name = f"core-only({inner.name})"
        self.bos_token_id, self.eos_token_id = inner.bos_token_id, inner.eos_token_id
        self.max_length, self.vocab_size = inner.max_length, inner.vocab_size
        self.calls = 0  # model work done through the contract

    def fingerprint(self):
        return self._inner.fingerprint()

    def tokenizer_fingerprint(self):
        return self._inner.tokenizer_fingerprint()

    def encode(self, texts):
        return self._inner.encode(texts)

    def decode(self, ids):
        return self._inner.decode(ids)

    def token_stats(self, sequences, score_from, *, padding_side="right"):
        self.calls += 1
        return self._inner.token_stats(sequences, score_from, padding_side=padding_side)

    def generate(self, prompts, config, *, logits_processor=None, batch_size=None):
        self.calls += 1
        return self._inner.generate(prompts, config, logits_processor=logits_processor, batch_size=batch_size)


class WithGradients(CoreOnly):
    def gradient_norms(self, windows):
        self.calls += 1
        return self._inner.gradient_norms(windows)


class WithPromptSearch(CoreOnly):
    def input_embeddings(self):
        return self._inner.input_embeddings()

    def logits_from_embeddings(self, embeddings, *, last):
        self.calls += 1
        return self._inner.logits_from_embeddings(embeddings, last=last)

    def prompt_tokens(self):
        return self._inner.prompt_tokens()


def _records(texts, prefix="d"):
    return [Record(id=f"{prefix}{i}", text=t, source=prefix, line=i + 1, meta={"duplication": 1 + i % 2})
            for i, t in enumerate(texts)]


def _questions():
    return [Record(id=f"q{i}", text=f"Where was Member {i} born? In", source="q", line=i + 1,
                   meta={"answer": f"Port {chr(65 + i)}ville"}) for i in range(6)]


@pytest.fixture
def core():
    return CoreOnly(FakeLM(MEMBERS))


def test_the_fake_model_memorises_its_members_and_scores_exactly():
    lm = FakeLM(MEMBERS)
    member, outsider = score_records(lm, _records(MEMBERS[:3])), score_records(lm, _records(NONMEMBERS[:3]))
    assert max(-s.logprob_mean for s in member) < min(-s.logprob_mean for s in outsider)
    # Its statistics are the kernel's over its own logits: log-softmax of logits(context) by hand.
    seq = [lm.bos_token_id, *lm.encode([MEMBERS[0]])[0]]
    stats = lm.token_stats([seq], [1])[0]
    for t in (1, 10, len(seq) - 1):
        z = lm.logits(seq[:t]).astype(np.float64)
        logp = z - np.log(np.exp(z - z.max()).sum()) - z.max()
        assert stats.logprob[t - 1] == pytest.approx(logp[seq[t]], abs=1e-4)
        assert stats.entropy[t - 1] == pytest.approx(-(np.exp(logp) * logp).sum(), abs=1e-4)
    # Greedy generation is the argmax loop, and a member's prefix is continued with its text.
    prompt = seq[:20]
    out = lm.generate([prompt], GenerationConfig(max_new_tokens=10, stop_at_eos=False))[0]
    ctx = list(prompt)
    for tok in out:
        assert tok == int(np.argmax(lm.logits(ctx)))
        ctx.append(tok)
    assert out == seq[20:30]


def test_core_only_runs_every_audit_that_needs_nothing_more(core):
    members, nonmembers = _records(MEMBERS, "m"), _records(NONMEMBERS, "n")
    scores = score_records(core, members)
    assert all(s.error is None for s in scores)

    reference = CoreOnly(FakeLM(NONMEMBERS[:4], seed=1, name="ref"))
    result = run_membership(core, members, nonmembers, config=MembershipConfig(attacks="all", n_bootstrap=50),
                            reference_model=reference, reference_corpus=_records(NONMEMBERS[:4], "c"))
    ran = set(result.results["attacks"])
    assert {"loss", "zlib", "lowercase", "recall", "neighbourhood", "reference_diff", "dc_pdd"} <= ran
    assert "gradnorm" not in ran  # needs a capability this backend lacks: left out of "all"
    # The perturber the neighbourhood attack used, the default word swap here, is in provenance.
    assert result.provenance["perturber"] == {"name": "word_swap", "fraction": 0.1, "pool": None}
    assert run_membership(core, members, nonmembers, config=MembershipConfig(attacks="loss")).provenance[
        "perturber"] is None
    assert result.results["attacks"]["loss"]["auc"] == 1.0  # the fake model memorised exactly its members

    di = run_dataset_inference(core, members, nonmembers, config=DatasetInferenceConfig(null_trials=0))
    assert di.results["n_suspect"] > 0

    private = [[Record(id=r.id, text=r.text.replace("born", "birthed"), source="p", line=r.line) for r in members]]
    paired = run_paired_test(core, members, private)
    assert paired.results["n_items"] == len(members)

    for samples in (0, 2):
        extraction, rows = run_extraction(core, members, config=ExtractionConfig(prefix_tokens=16, suffix_tokens=8,
                                                                                 samples=samples))
        assert extraction["n"] == len(members)
    assert extraction["exact_match_rate"] > 0.5  # members are continued verbatim

    knowledge, rows = run_knowledge(core, _questions(), config=KnowledgeConfig(template="cloze", n_shots=0,
                                                                              max_new_tokens=12))
    assert knowledge["n"] == 6


def test_audits_that_need_a_capability_refuse_before_any_work(core):
    members, nonmembers = _records(MEMBERS, "m"), _records(NONMEMBERS, "n")
    with pytest.raises(CapabilityError, match=r"ACR needs the 'prompt_search' capability .*HFModel"):
        run_acr(core, members[:2], config=ACRConfig(steps=1))
    with pytest.raises(CapabilityError, match=r"attack gradnorm needs the 'gradients' capability .*HFModel"):
        run_membership(core, members, nonmembers, config=MembershipConfig(attacks="loss,gradnorm"))
    from lmaudit.membership.attacks.gradnorm import GradNorm
    from lmaudit.membership.run import score_attacks
    from lmaudit.models.base import ScoringPolicy

    with pytest.raises(CapabilityError, match="gradients"):  # the lower-level entry point too
        score_attacks(core, members, [GradNorm()], policy=ScoringPolicy(), batch_size=4, cache=None, on_pass=None, seed=0)
    assert core.calls == 0  # refused before scoring or generating anything


def test_each_capability_alone_unlocks_its_audits(tiny_lm):
    members = [Record(id=i, text=t, source="m", line=i + 1) for i, t in enumerate(MEMBERS[:4])]
    nonmembers = [Record(id=i, text=t, source="n", line=i + 1) for i, t in enumerate(NONMEMBERS[:4])]
    grads = WithGradients(tiny_lm)
    assert has_capability(grads, "gradients") and not has_capability(grads, "prompt_search")
    result = run_membership(grads, members, nonmembers, config=MembershipConfig(attacks="gradnorm", n_bootstrap=20))
    assert result.results["attacks"]["gradnorm"]["auc"] is not None
    with pytest.raises(CapabilityError, match="prompt_search"):
        run_acr(grads, members[:1])

    search = WithPromptSearch(tiny_lm)
    target = tiny_lm.generate([[tiny_lm.bos_token_id, 40]], GenerationConfig(max_new_tokens=3, stop_at_eos=False))[0]
    results, rows = run_acr(search, [Record(id="t", text=tiny_lm.decode(target), source="t", line=1)],
                            config=ACRConfig(steps=3, n_candidates=16, top_k=16, max_prompt_tokens=2))
    assert results["n"] == 1 and rows[0]["status"] in ("memorized", "not_memorized")
    with pytest.raises(CapabilityError, match="gradients"):
        run_membership(search, members, nonmembers, config=MembershipConfig(attacks="gradnorm"))


def test_the_hugging_face_backend_has_every_capability(tiny_lm):
    assert has_capability(tiny_lm, "gradients") and has_capability(tiny_lm, "prompt_search")
    emb = tiny_lm.input_embeddings()[torch.tensor([[tiny_lm.bos_token_id, 40, 41]])]
    logits = tiny_lm.logits_from_embeddings(emb, last=3)  # positions 0 and 1 predict 40 and 41
    stats = tiny_lm.token_stats([[tiny_lm.bos_token_id, 40, 41]], [1])[0]
    logp = torch.log_softmax(logits[0, :2], -1)
    assert torch.allclose(logp[[0, 1], [40, 41]], torch.as_tensor(stats.logprob), atol=1e-4)


def test_the_whp_backend_runs_the_audits_through_the_core_contract(tiny_lm):
    """A Who's Harry Potter combination (lmaudit.models.whp) is an ordinary model to the audits."""
    import copy

    from lmaudit.models.hf import HFModel
    from lmaudit.models.whp import WHPModel

    reinforced = copy.deepcopy(tiny_lm.model)
    with torch.no_grad():
        for p in reinforced.parameters():
            p.mul_(1.1)
    whp = CoreOnly(WHPModel(tiny_lm, HFModel(reinforced, tiny_lm.tokenizer), alpha=1.0))
    members, nonmembers = _records(MEMBERS[:4], "m"), _records(NONMEMBERS[:4], "n")
    assert all(s.error is None for s in score_records(whp, members))
    result = run_membership(whp, members, nonmembers, config=MembershipConfig(attacks="loss,zlib,min_k", n_bootstrap=20))
    assert {"loss", "zlib"} <= set(result.results["attacks"]) and result.results["attacks"]["loss"]["auc"] is not None
    extraction, _ = run_extraction(whp, members, config=ExtractionConfig(prefix_tokens=8, suffix_tokens=4))
    assert extraction["n"] == len(members)
    knowledge, _ = run_knowledge(whp, _questions(), config=KnowledgeConfig(template="cloze", n_shots=0, max_new_tokens=4))
    assert knowledge["n"] == 6 and whp.calls > 0


class WithPredictions(CoreOnly):
    def top_predictions(self, sequences, score_from):
        self.calls += 1
        return self._inner.top_predictions(sequences, score_from)


class WithLogitsProcessors(CoreOnly):
    def applies_logits_processors(self):
        return True


class WithVocabStats(CoreOnly):
    def vocab_stat_fields(self):
        return self._inner.vocab_stat_fields()


def test_min_k_pp_needs_vocabulary_statistics(core):
    """Min-K%++ reads vocab_mean/vocab_std: refused before any work without the 'vocab_stats'
    capability, left out of the default set, and run once the capability is there."""
    members, nonmembers = _records(MEMBERS, "m"), _records(NONMEMBERS, "n")
    with pytest.raises(CapabilityError, match=r"attack min_k_pp@0\.2 needs the 'vocab_stats' capability .*HFModel"):
        run_membership(core, members, nonmembers, config=MembershipConfig(attacks="min_k_pp@0.2"))
    assert core.calls == 0
    ran = run_membership(core, members, nonmembers, config=MembershipConfig(n_bootstrap=20)).results["attacks"]
    assert "loss" in ran and not any(a.startswith("min_k_pp") for a in ran)
    able = WithVocabStats(FakeLM(MEMBERS))
    ran = run_membership(able, members, nonmembers, config=MembershipConfig(n_bootstrap=20)).results["attacks"]
    assert ran["min_k_pp@0.2"]["auc"] is not None


def test_radioactivity_reads_predictions_and_watermarking_needs_logits_processors(core):
    """Watermarked generation needs the core contract plus the 'logits_processors' capability
    (generate applies the caller's processors) and refuses a model without it before any work;
    detection needs only the core. The open-model radioactivity test needs the 'predictions'
    capability and refuses a model without it before any work, naming the backends that have it."""
    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.detect import detect_tokens
    from lmaudit.watermark.processor import generate
    from lmaudit.watermark.radioactive import reading_test

    config = WatermarkConfig.create(core, 5, preset="lefthash", delta=4.0)
    prompts = [[core.bos_token_id, *core.encode([t])[0][:6]] for t in MEMBERS[:3]]
    with pytest.raises(CapabilityError, match=r"'logits_processors' capability .*HFModel"):
        generate(core, prompts, config, 5, generation=GenerationConfig(max_new_tokens=40, do_sample=True))
    assert core.calls == 0
    able = WithLogitsProcessors(FakeLM(MEMBERS))
    gens = generate(able, prompts, config, 5, generation=GenerationConfig(max_new_tokens=40, do_sample=True))
    assert all(r["detected"] for r in detect_tokens(gens, config, 5))
    texts = core.encode(MEMBERS[:3])
    calls = core.calls
    with pytest.raises(CapabilityError, match=r"'predictions' capability .*HFModel.*FakeLM"):
        reading_test(core, texts, config, 5)
    assert core.calls == calls
    able = WithPredictions(FakeLM(MEMBERS))
    result = reading_test(able, texts, config, 5)
    assert able.calls >= 1 and result["n_positions"] == sum(len(t) - 1 for t in texts)
