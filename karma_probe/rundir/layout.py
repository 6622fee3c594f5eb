"""Every file name and schema string of a run directory, written down once (checkpoints.md).

    runs/<name>/
      config.json            CONFIG       resolved TrainConfig + provenance
      checkpoint/            CHECKPOINT   final weights; holds config.json (HF), state.json, tokenizer.json
      checkpoints/step-N/    CHECKPOINTS  intermediate checkpoints, same layout (step_dir(N))
      resume/                RESUME       optimizer + RNG state for --resume
      train_log.jsonl        TRAIN_LOG    one object per logged step
      metrics.json           METRICS      retrieval
      capture/               CAPTURE      manifest.json + stats / maps / hidden .safetensors
      analysis.json          ANALYSIS     records, summary, intervals, trajectory

Code that needs a path builds it from these names (or from :class:`RunPaths`), never from a
literal, so a rename is one edit here. Nothing in this module touches the disk except
:meth:`RunPaths.stages`.
"""

from __future__ import annotations

import re
from pathlib import Path

# --------------------------------------------------------------------------- schema strings

CAPTURE_SCHEMA = "karma_probe.capture/1"  # capture/manifest.json "schema" (and each capture file's metadata)
ANALYSIS_SCHEMA = "karma_probe.analysis/1"  # analysis.json "schema"

# --------------------------------------------------------------------------- file names

CONFIG = "config.json"  # in a run dir: the run's config; in a checkpoint dir: the HF model config
METRICS = "metrics.json"
ANALYSIS = "analysis.json"
TRAIN_LOG = "train_log.jsonl"
CHECKPOINT = "checkpoint"
CHECKPOINTS = "checkpoints"
RESUME = "resume"
STATE = "state.json"  # in every checkpoint dir: {"step", "condition", "config_hash", "train"}; also in resume/
TOKENIZER = "tokenizer.json"  # in a checkpoint dir (HF tokenizers)
CAPTURE = "capture"
MANIFEST = "manifest.json"  # in a capture dir

# A capture's tensor files: stats.safetensors, maps.safetensors, hidden.safetensors
CAPTURE_PARTS = ("stats", "maps", "hidden")
STATS_FILE, MAPS_FILE, HIDDEN_FILE = (f"{part}.safetensors" for part in CAPTURE_PARTS)
# The probe sets of a capture: stats keys are "{set}.attn.*", manifest "probes" has one entry per set.
# "user": the prompts of a --probes-file (a user's own model); a capture holds the sets it was given.
PROBE_SETS = ("history", "text", "user")
# The headline set of a capture: the first of these it holds (history: the task's prompts)
HEADLINE_SETS = ("history", "user", "text")

# Conditions (config.json "condition") of runs captured as loaded, without retriever heads: the
# preset's backbone untouched ("base", the trained runs' reference) and a user's own model
# ("model": any local causal-LM directory, an adapter merged in; capture --model DIR).
BASE, MODEL = "base", "model"
UNTRAINED = (BASE, MODEL)


def part_file(part: str) -> str:
    """The file of a capture part: ``"stats"`` → ``"stats.safetensors"``."""
    return f"{part}.safetensors"


STEP_DIR = re.compile(r"step-(\d+)")  # checkpoints/step-000100


def step_dir(step: int) -> str:
    """The name of an intermediate checkpoint's directory: ``step-000100``."""
    return f"step-{step:06d}"


# Files whose presence makes a directory a run dir (a half-written one is still a run: broken).
RUN_MARKERS = (ANALYSIS, CONFIG, TRAIN_LOG, CHECKPOINT)
# The files of a run dir that results.load_run reads (a confined listing checks each before opening).
RUN_FILES = (ANALYSIS, CONFIG, METRICS, TRAIN_LOG)
# The stages of a run, in pipeline order, each done when its file exists (``karma-probe ls``).
STAGES = {"checkpoint": f"{CHECKPOINT}/{CONFIG}", "metrics": METRICS, "capture": f"{CAPTURE}/{MANIFEST}",
          "analysis": ANALYSIS}


class RunPaths:
    """The paths of one run directory (checkpoints.md), computed, not checked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunPaths({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def analysis(self) -> Path:
        return self.root / ANALYSIS

    @property
    def train_log(self) -> Path:
        return self.root / TRAIN_LOG

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def step(self, step: int) -> Path:
        """An intermediate checkpoint: ``checkpoints/step-000100``."""
        return self.checkpoints / step_dir(step)

    @property
    def capture(self) -> Path:
        return self.root / CAPTURE

    @property
    def manifest(self) -> Path:
        return self.capture / MANIFEST

    @property
    def state(self) -> Path:
        """The final checkpoint's ``state.json``."""
        return self.checkpoint / STATE

    @property
    def tokenizer(self) -> Path:
        return self.checkpoint / TOKENIZER

    def stages(self) -> list[str]:
        """The names of the :data:`STAGES` this run has done."""
        return [name for name, rel in STAGES.items() if (self.root / rel).is_file()]
