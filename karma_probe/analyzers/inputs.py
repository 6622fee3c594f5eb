"""What the analyzers read: a run's capture, its model and its retrieval metrics, loaded lazily.

- The capture is :class:`karma_probe.rundir.capture.Capture` (re-exported here): numpy arrays, so
  the attention and geometry analyzers run without loading a model. ``Capture.load`` refuses a
  capture of another schema and one whose model fingerprint or step disagrees with the checkpoint
  (a capture copied from another run would otherwise be analyzed silently).
- :class:`RunInputs` is what every analyzer receives. The model (torch) is loaded only when an
  analyzer asks for it, and embeddings that several analyzers share (the fit split of the
  decodability probes) are computed once.

Two things keep the read-outs honest (issue 13):

- **Leak-free fit**: the fit examples are drawn only among users whose test example is *not* a
  scored probe (:meth:`RunInputs.fit_examples`), so no user is both fitted and scored.
- **One embedding funnel**: every interest embedding of a history that an analyzer computes goes
  through :meth:`RunInputs.embed_histories` (one place to change the input interface).

A capture can also be built in memory from an already loaded model (the capture library's
``capture_model``), which is how ``--all-checkpoints`` measures intermediate checkpoints.
"""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path

import numpy as np

from karma_probe.analyzers.registry import Absent
from karma_probe.core.errors import BadInput
from karma_probe.rundir import RunPaths, read_config, read_json
from karma_probe.rundir.capture import Capture

# The decodability probes are fitted on valid-split examples (history → second-last item) of
# users that are not scored, and scored on the captured test probes (history → last item):
# disjoint users, the same recipe for every run. FIT_EXAMPLES bounds their cost: embedding them
# is one forward pass of a ~100-token prompt each (cost: benchmarks/README.md), and it is what
# the probes learn from.
FIT_EXAMPLES = 192
FIT_SEED = 0
EMBED_BATCH = 16
CHECK_PROBES = 2  # probes re-embedded to check that the capture belongs to the loaded checkpoint


# --------------------------------------------------------------------------- inputs of one analysis


class RunInputs:
    """One checkpoint of one run, as the analyzers see it; ``capture`` may be None (then the
    capture-based metrics raise :class:`Absent`) or be set after the model is loaded."""

    def __init__(self, run_dir: str | Path, *, checkpoint: str | Path | None = None, capture: Capture | None = None,
                 metrics_path: str | Path | None = None, progress: bool = False, reader=None, placement=None):
        from karma_probe.analyzers.reader import FixedReader

        self.run_dir = Path(run_dir)
        self.checkpoint = Path(checkpoint) if checkpoint else RunPaths(run_dir).checkpoint
        self.capture = capture
        self.metrics_path = Path(metrics_path) if metrics_path else RunPaths(run_dir).metrics
        self.progress = progress
        self.reader = reader or FixedReader()  # shared by every checkpoint of one analysis
        self.shared: dict = {}  # results several analyzers read (a decoder fit, its scores)
        self.placement = placement  # device and dtype the model loads into (karma_probe.core.device); None: CPU fp32

    @cached_property
    def meta(self) -> dict:
        """The run's config.json (condition, backbone), read without loading the model; {} when absent."""
        return read_config(self.run_dir)

    @cached_property
    def space(self):
        """The space the interest / item embeddings are measured in (analyzers/space.py)."""
        from karma_probe.analyzers.space import space_for

        d = int(self._need_capture().hidden["interest"].shape[1])
        return space_for(self.meta.get("condition"), (self.meta.get("train") or {}).get("model"), d)

    # ----------------------------------------------------------------- capture-backed

    def _need_capture(self) -> Capture:
        if self.capture is None:
            raise Absent(f"{self.checkpoint}: no capture")
        return self.capture

    @property
    def headline_set(self) -> str:
        """The probe set of the headline numbers: history, else the user's prompts, else the passages."""
        return self._need_capture().headline_set()

    def attention_sets(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        cap = self._need_capture()
        return [(name, cap.set_stats(name)) for name in cap.sets()]

    def residual_sets(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        return [(n, s) for n, s in self.attention_sets() if "resid.massive_sum" in s]

    def embedding_sets(self) -> list[tuple[str, int | None, np.ndarray]]:
        """(set, layer, X) with at least 2 rows: interest, items, the marker hidden state per residual
        index, then the user's prompts' last-token state per residual index (and, for a capture
        without history probes, the headline set's: its geometry headline, :attr:`geometry_headline`)."""
        cap = self._need_capture()
        h = cap.hidden
        out = [("interest", None, self.interest), ("items", None, self.space.apply(h["items"]))]
        out += [("marker", m, h["marker_hidden"][:, m]) for m in range(h["marker_hidden"].shape[1])]
        for name in dict.fromkeys([cap.headline_set(), "user"]):
            last = cap.last_hidden(name) if name != "history" else None
            if last is not None:
                out += [(name, m, last[:, m]) for m in range(last.shape[1])]
        return [(name, layer, X) for name, layer, X in out if len(X) >= 2]

    @property
    def geometry_headline(self) -> tuple[str, int | None]:
        """(set, layer) of the geometry headline: the interest embeddings, or for a capture without
        history probes the last layer's last-token state of the headline probe set."""
        cap = self._need_capture()
        name = cap.headline_set()
        if name == "history":
            return "interest", None
        last = cap.last_hidden(name)
        if last is None:
            raise Absent(f"{cap.where('hidden.safetensors')}: no last-token hidden states of the {name} probes "
                         "(captured before they were kept): re-run `karma-probe capture`")
        return name, last.shape[1] - 1

    @property
    def probe_texts(self) -> list[str]:
        return self._need_capture().history_texts()

    @property
    def probe_targets(self) -> np.ndarray:
        return self._need_capture().hidden["targets"].astype(np.int64)

    @property
    def interest(self) -> np.ndarray:
        """[N, e] the captured interest embeddings of the history probes, in :attr:`space`."""
        return self.space.apply(self._need_capture().hidden["interest"])

    @property
    def probe_users(self) -> list[str]:
        return self._need_capture().users()

    # ----------------------------------------------------------------- model-backed

    @cached_property
    def loaded(self):
        import torch
        from transformers.utils import logging as hf_logging

        from karma_probe.model.retriever import load_run_model

        hf_logging.disable_progress_bar()  # a weight-loading bar per checkpoint is noise, and would sit above errors
        torch.manual_seed(0)
        loaded = load_run_model(self.run_dir, checkpoint=self.checkpoint, placement=self.placement)
        if self.capture is not None:
            self._check_capture_matches(loaded[0], loaded[2])
        return loaded

    def _check_capture_matches(self, model, cfg) -> None:
        """Re-embed a few probes: a capture of another run with the same architecture and step
        passes the fingerprint, but not this (interest embeddings are L2-normed: cos = dot)."""
        probes = self.capture.manifest.get("probes", {})
        lengths = (probes.get("history") or {}).get("lengths") or []
        max_len = probes.get("max_len")
        texts = self.capture.history_texts()
        # probes cut to max_len were embedded from their last max_len tokens: skip those
        idx = [i for i in range(len(texts)) if not (max_len and i < len(lengths) and lengths[i] >= max_len)][:CHECK_PROBES]
        if not idx:
            return
        dataset = self._dataset_of(cfg, model)
        examples = self.probe_examples(dataset)
        got = self.embed_histories([examples[i] for i in idx], model=model, max_items=self.max_items(cfg),
                                   dataset=dataset)
        want = self.capture.hidden["interest"][idx]
        cos = (got * want).sum(-1) if got.shape == want.shape else np.zeros(1)
        if float(cos.min()) < 0.99:
            raise BadInput(f"{self.capture.path}: the captured interest embeddings are not this checkpoint's "
                           f"({self.checkpoint}; cosine {float(cos.min()):.3f}): a capture of another run? "
                           "re-run `karma-probe capture`")

    @property
    def model(self):
        return self.loaded[0]

    @property
    def cfg(self):
        return self.loaded[2]

    @property
    def dataset(self):
        return self._dataset_of(self.cfg, self.model)

    def _dataset_of(self, cfg, model):
        """The run's dataset (``cfg.dataset``), read once; a continuous model must have its catalogue's size."""
        if getattr(self, "_dataset", None) is None:
            from karma_probe.data.dataset import load_dataset

            if not cfg.dataset:
                raise Absent("no dataset: this model was captured without one (no history probes), and "
                             "this read-out needs the retriever's history prompts and their target items")

            dataset = load_dataset(cfg.dataset)
            model.check_catalogue(len(dataset.items), str(self.checkpoint))
            self._dataset = dataset
        return self._dataset

    def probe_examples(self, dataset=None) -> list:
        """The test-split examples the captured history probes were rendered from, in probe order."""
        dataset = dataset or self.dataset
        by_user = {ex.user: ex for ex in dataset.split().test}
        users = self.probe_users
        missing = [u for u in users if u not in by_user]
        if missing:
            raise BadInput(f"{self.capture.path / 'manifest.json'}: probe user {missing[0]!r} has no test example "
                           f"in dataset {dataset.name!r} (a capture of another dataset?)")
        return [by_user[u] for u in users]

    def max_items(self, cfg=None) -> int:
        """History items per prompt: the capture's (so fitted and scored prompts look alike), else the run's."""
        return (self.capture.max_items() if self.capture else None) or (cfg or self.cfg).max_history

    def embed_histories(self, examples, *, model=None, max_items: int | None = None, dataset=None) -> np.ndarray:
        """Interest embeddings [M, e] of ``examples`` (data.Example: user, history, target), raw (not
        in :attr:`space`). THE one place where analyzers turn histories into interest embeddings:
        the model's own interest encoder in its interface (``KarmaModel.interest_for``: the newest
        ``max_items`` items, as a rendered prompt or as item tokens). Batches are sorted by history
        length (less padding)."""
        model = model or self.model
        max_items = max_items or self.max_items()
        items = (dataset or self.dataset).items  # the text interface renders prompts from them
        histories = [ex.history for ex in examples]
        order = sorted(range(len(histories)), key=lambda i: len(histories[i]))
        emb = model.interest_for([histories[i] for i in order], max_items, batch_size=EMBED_BATCH,
                                 progress=self.progress, items=items)
        X = np.empty(tuple(emb.shape), dtype=np.float32)
        X[order] = emb.numpy()
        return X

    @cached_property
    def fit_examples(self) -> list:
        """FIT_EXAMPLES valid-split examples (history → second-last item), drawn with
        ``random.Random(FIT_SEED)`` **only among users that are not scored** (not in the capture's
        ``probes.history.users``): fit users and scored users are disjoint by construction."""
        valid = self.dataset.split().valid
        scored = set(self.probe_users)
        candidates = [k for k in range(len(valid)) if valid[k].user not in scored]
        chosen = sorted(random.Random(FIT_SEED).sample(candidates, min(FIT_EXAMPLES, len(candidates))))
        return [valid[k] for k in chosen]

    @cached_property
    def fit_split(self) -> tuple[np.ndarray, np.ndarray]:
        """(interest [M, e] in :attr:`space`, target item index [M]) of :attr:`fit_examples`."""
        examples = self.fit_examples
        return self.space.apply(self.embed_histories(examples)), np.array([ex.target for ex in examples], dtype=np.int64)

    # ----------------------------------------------------------------- metrics.json

    @cached_property
    def retrieval(self) -> dict:
        if not self.metrics_path.is_file():
            from karma_probe.rundir.layout import UNTRAINED

            if self.meta.get("condition") in UNTRAINED:
                raise Absent(f"no retrieval metrics ({self.metrics_path} does not exist): a model captured as loaded "
                             "has no retriever head to rank a catalogue")
            # name the file as missing: "metrics.json: no retrieval metrics" read as a file without them
            raise Absent(f"no retrieval metrics for this checkpoint: {self.metrics_path} does not exist (`train` "
                         "scores a run; an untouched reference run, or a checkpoint saved between evaluations, has none)")
        m = read_json(self.metrics_path, "retrieval metrics")
        if not isinstance(m, dict) or not isinstance(m.get("test"), dict):
            raise BadInput(f"{self.metrics_path}: no 'test' split (checkpoints.md: {{'valid': ..., 'test': ...}})")
        return m["test"]
