"""What the watermark costs: detection throughput, generation overhead and the null-key
calibration, side by side in one run (issue 15).

1. Detection: ``detect_tokens`` on pre-tokenised random ids (``--texts`` texts of
   ``--length`` tokens, as the Python lists a tokenizer returns) for each preset and
   vocabulary; then the text path a user runs, ``detect_texts`` (the testbed tokenizer
   re-encodes texts decoded from the same ids, then detection), and the extra cost of the
   window search (``with_spans=True``) per text. Presets interleaved, ``--repeats`` times,
   the median counts.
2. Generation: the testbed model at batch 32, ``--prompts`` prompts (BOS + the first 16
   tokens of non-member documents), ``--new-tokens`` sampled tokens at temperature 1.0,
   plain against each preset, in rotated order over ``--gen-repeats`` repeats; the median
   and its ratio to plain. Beside it, the logits processor alone on random (B, V) logits at
   larger vocabularies, in µs per decoding step, to read the overhead for a real model
   (where the forward pass, not the processor, dominates a step).
3. Null-key calibration: ``null_calibration`` under ``--null-keys`` keys on about 25,000
   positions (the open-model radioactivity test's false-positive check).

Random ids give the same costs as real text: detection hashes every position whatever its
token, and the window grid depends only on a text's length.

    python benchmarks/bench_watermark.py --model /work/bench/tb/model \\
        --nonmembers /work/bench/tb/data/nonmembers.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

KEY = 0x5EED_1234_ABCD


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _random_config(preset: str, vocab: int):
    from lmaudit.watermark.config import PRESETS, WatermarkConfig, key_id

    return WatermarkConfig(key_id=key_id(KEY), tokenizer="random-ids", vocab_size=vocab, **PRESETS[preset])


def bench_detection(args, lm) -> dict:
    import numpy as np

    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.detect import detect_texts, detect_tokens

    rng = np.random.default_rng(0)
    n_tokens = args.texts * args.length
    ids = {v: rng.integers(0, v, size=(args.texts, args.length)).tolist() for v in args.vocabs}
    configs = {(p, v): _random_config(p, v) for p in args.presets for v in args.vocabs}
    # The text path: texts decoded from random ids of the testbed's own vocabulary.
    texts = [lm.decode(x) for x in rng.integers(3, lm.vocab_size, size=(args.texts, args.length)).tolist()]
    lm_configs = {p: WatermarkConfig.create(lm, KEY, preset=p) for p in args.presets}
    n_text_tokens = sum(map(len, lm.encode(texts)))
    span_vocab = lm.vocab_size if lm.vocab_size in ids else args.vocabs[0]
    span_texts = ids[span_vocab][: args.span_texts]
    detect_tokens(ids[args.vocabs[0]][:100], configs[(args.presets[0], args.vocabs[0])], KEY)  # imports, scipy

    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for p in args.presets:
            for v in args.vocabs:
                runs.setdefault(f"ids {p} {v}", []).append(_timed(lambda: detect_tokens(ids[v], configs[(p, v)], KEY)))
            runs.setdefault(f"encode {p}", []).append(_timed(lambda: lm.encode(texts)))
            runs.setdefault(f"texts {p}", []).append(_timed(lambda: detect_texts(lm, texts, lm_configs[p], KEY)))
            c = configs[(p, span_vocab)]
            runs.setdefault(f"nospans {p}", []).append(_timed(lambda: detect_tokens(span_texts, c, KEY)))
            runs.setdefault(f"spans {p}", []).append(_timed(lambda: detect_tokens(span_texts, c, KEY, with_spans=True)))
    med = {k: statistics.median(v) for k, v in runs.items()}
    out = {"n_texts": args.texts, "length": args.length, "n_tokens": n_tokens, "n_text_tokens": n_text_tokens,
           "span_texts": len(span_texts), "span_vocab": span_vocab, "runs": runs, "rows": {}}
    for p in args.presets:
        row = {f"ids_{v}_tok_s": n_tokens / med[f"ids {p} {v}"] for v in args.vocabs}
        row |= {"texts_s": med[f"texts {p}"], "texts_tok_s": n_text_tokens / med[f"texts {p}"],
                "encode_s": med[f"encode {p}"],
                "spans_ms_per_text": (med[f"spans {p}"] - med[f"nospans {p}"]) / len(span_texts) * 1e3,
                "nospans_ms_per_text": med[f"nospans {p}"] / len(span_texts) * 1e3}
        out["rows"][p] = row
    return out


def bench_generation(args, lm) -> dict:
    from lmaudit.models.base import GenerationConfig
    from lmaudit.watermark.config import WatermarkConfig
    from lmaudit.watermark.processor import generate

    docs = [json.loads(line)["text"] for line in args.nonmembers.open(encoding="utf-8") if line.strip()]
    prompts = [[lm.bos_token_id, *x[:16]] for x in lm.encode(docs[: args.prompts])]
    gen = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=True, temperature=1.0, stop_at_eos=False)
    # "no-op": a custom processor that returns the scores unchanged, to separate what any
    # processor costs inside Hugging Face's generate loop from what the watermark costs.
    methods = ["plain", "no-op", *args.presets]
    configs = {m: WatermarkConfig.create(lm, KEY, preset=m) for m in args.presets}
    generate(lm, prompts[:4], None, generation=gen, batch_size=args.batch_size)  # warm-up
    runs: dict[str, list[float]] = {m: [] for m in methods}
    n_new = 0
    for r in range(args.gen_repeats):
        for m in methods[r % len(methods):] + methods[: r % len(methods)]:  # rotate who goes first
            t = time.perf_counter()
            if m == "no-op":
                out = lm.generate(prompts, gen, logits_processor=[lambda ids, scores: scores],
                                  batch_size=args.batch_size)
            else:
                out = generate(lm, prompts, configs.get(m), KEY, generation=gen, batch_size=args.batch_size)
            runs[m].append(time.perf_counter() - t)
            n_new = sum(map(len, out))
    med = {m: statistics.median(v) for m, v in runs.items()}
    batches = -(-len(prompts) // args.batch_size)
    steps = batches * args.new_tokens
    return {"n_prompts": len(prompts), "new_tokens": args.new_tokens, "batch_size": args.batch_size,
            "n_generated": n_new, "runs": runs,
            "rows": {m: {"s": med[m], "ratio": med[m] / med["plain"], "ms_per_step": med[m] / steps * 1e3}
                     for m in methods}}


def bench_processor(args) -> dict:
    import torch

    from lmaudit.watermark.processor import WatermarkProcessor

    g = torch.Generator().manual_seed(0)
    out: dict[str, dict] = {}
    for v in args.proc_vocabs:
        ids = torch.randint(0, v, (args.batch_size, 17 + 64), generator=g)
        scores = torch.randn(args.batch_size, v, generator=g)
        procs = {p: WatermarkProcessor(_random_config(p, v), KEY) for p in args.presets}
        for p in procs.values():
            p(ids, scores)  # builds the per-vocabulary hasher once, as the first step of a generation does
        calls = max(5, int(args.proc_calls * 2048 / v))
        runs: dict[str, list[float]] = {p: [] for p in procs}
        for _ in range(calls):
            for p, proc in procs.items():
                runs[p].append(_timed(lambda: proc(ids, scores)))
        out[str(v)] = {p: statistics.median(r) * 1e6 for p, r in runs.items()} | {"calls": calls}
    return out


def bench_null(args) -> dict:
    import numpy as np

    from lmaudit.watermark.radioactive import null_calibration, reading_setup

    rng = np.random.default_rng(1)
    texts = rng.integers(0, 2048, size=(args.null_positions // 200, 200)).tolist()
    preds = [rng.integers(0, 2048, 200) for _ in texts]  # a suspect's predictions: random here
    out = {}
    for p in args.presets:
        config = _random_config(p, 2048)
        setup = reading_setup(texts, preds, config.context)
        t = time.perf_counter()
        res = null_calibration(setup, config, n_keys=args.null_keys, seed=0)
        out[p] = {"s": time.perf_counter() - t, "positions": int(setup.tested.sum()),
                  "rate_0.05": res["rates"]["0.05"]["rate"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("/work/bench/tb/model"))
    ap.add_argument("--nonmembers", type=Path, default=Path("/work/bench/tb/data/nonmembers.jsonl"))
    ap.add_argument("--presets", type=lambda s: s.split(","), default=["lefthash", "selfhash", "gumbel"])
    ap.add_argument("--texts", type=int, default=10_000)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--vocabs", type=lambda s: [int(x) for x in s.split(",")], default=[2048, 50_257])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--span-texts", type=int, default=1000)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--gen-repeats", type=int, default=5)
    ap.add_argument("--proc-vocabs", type=lambda s: [int(x) for x in s.split(",")], default=[2048, 50_257, 128_256])
    ap.add_argument("--proc-calls", type=int, default=200, help="Processor calls at V=2048 (fewer at larger V).")
    ap.add_argument("--null-keys", type=int, default=1000)
    ap.add_argument("--null-positions", type=int, default=25_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON here.")
    args = ap.parse_args()

    import torch

    from lmaudit.models.hf import HFModel

    torch.set_num_threads(args.threads)
    lm = HFModel.from_pretrained(str(args.model), device="cpu", batch_size=args.batch_size)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    figures = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu(), "cores": os.cpu_count(), "threads": args.threads,
               "torch": torch.__version__, "load_before": [round(x, 2) for x in load0]}
    figures["detection"] = d = bench_detection(args, lm)
    figures["generation"] = g = bench_generation(args, lm)
    figures["processor_us"] = pr = bench_processor(args)
    figures["null"] = nu = bench_null(args)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    figures["total_s"] = time.perf_counter() - t0

    print(f"{figures['date']}, {figures['cpu']}, {figures['cores']} cores, torch {figures['torch']}, "
          f"{args.threads} thread(s); load average {figures['load_before'][0]} before, {figures['load_after'][0]} after; "
          f"{figures['total_s']:.0f} s in all")
    print(f"\n1. Detection, {d['n_texts']:,} texts x {d['length']} tokens ({d['n_tokens']:,} tokens), "
          f"median of {args.repeats}")
    head = "".join(f"{f'ids tok/s V={v}':>20}" for v in args.vocabs)
    print(f"{'preset':<10}{head}{'texts s':>10}{'texts tok/s':>14}{'encode s':>10}"
          f"{'detect ms/text':>16}{'+spans ms/text':>16}")
    for p, r in d["rows"].items():
        print(f"{p:<10}" + "".join(f"{r[f'ids_{v}_tok_s']:>20,.0f}" for v in args.vocabs)
              + f"{r['texts_s']:>10.2f}{r['texts_tok_s']:>14,.0f}{r['encode_s']:>10.2f}"
              + f"{r['nospans_ms_per_text']:>16.3f}{r['spans_ms_per_text']:>16.3f}")
    print(f"(text path: {d['n_text_tokens']:,} tokens after re-encoding; spans on {d['span_texts']:,} texts, "
          f"V={d['span_vocab']})")
    print(f"\n2. Generation, {g['n_prompts']} prompts x {g['new_tokens']} new tokens, batch {g['batch_size']}, "
          f"median of {args.gen_repeats} (rotated order)")
    print(f"{'method':<10}{'s':>8}{'x plain':>9}{'ms/step':>9}  runs")
    for m, r in g["rows"].items():
        print(f"{m:<10}{r['s']:>8.3f}{r['ratio']:>9.3f}{r['ms_per_step']:>9.2f}  "
              + ", ".join(f"{x:.2f}" for x in g["runs"][m]))
    print(f"\nProcessor alone, B={args.batch_size}, random logits: us per step (median)")
    print(f"{'V':>8}" + "".join(f"{p:>12}" for p in args.presets) + f"{'calls':>8}")
    for v, r in pr.items():
        print(f"{int(v):>8,}" + "".join(f"{r[p]:>12,.0f}" for p in args.presets) + f"{r['calls']:>8}")
    print(f"\n3. Null-key calibration, {args.null_keys:,} keys")
    for p, r in nu.items():
        print(f"{p:<10}{r['s']:>8.2f} s on {r['positions']:,} positions (p<0.05 under {r['rate_0.05']:.3f} of keys)")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
