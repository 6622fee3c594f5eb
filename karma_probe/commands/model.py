"""Inspect a backbone: layers, width, heads, parameter count, as JSON."""

import json
from dataclasses import asdict

EXAMPLES = """examples:
  karma-probe model info                                        # SmolLM2-135M-Instruct (converted from GGUF on first use)
  karma-probe model info --model tiny                           # the random-init test backbone
  karma-probe model info --model runs/tiny-karma-s0/checkpoint  # any local HF causal-LM directory
"""


def add_arguments(p):
    p.add_argument("action", choices=["info"], help="what to show")
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny, or a local HF directory")


def run(args) -> int:
    from karma_probe.model.backbones import load_backbone, model_info

    model, _ = load_backbone(args.model)
    print(json.dumps(asdict(model_info(args.model, model)), indent=2))
    return 0
