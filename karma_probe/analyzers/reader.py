"""The fixed reader: one untouched backbone that every run's post-hoc decoder is trained on.

``probe_decode_acc`` trains a fresh soft-prompt decoder on a frozen backbone. On the run's own
backbone (``probe_decode_acc_own``) the number mixes what the embedding holds with how well that
backbone reads soft prompts, which training changes too. On one fixed reader — the untouched
model of the run's backbone family — runs are compared on the same reader (issue 13):

- ``smollm2-135m``: the pretrained SmolLM2-135M (``models.load_backbone``);
- ``tiny``: the seed-0 random initialization (``load_backbone("tiny", seed=0)``);
- a local HF directory: that directory.

One :class:`FixedReader` is shared by every checkpoint of one analysis, so the reader loads once.
"""

from __future__ import annotations

READER_SEED = 0


class FixedReader:
    """Loads the reader of a backbone spec on first use and keeps it (one spec at a time)."""

    def __init__(self):
        self._spec: str | None = None
        self._loaded = None

    def get(self, spec: str):
        """``(backbone, tokenizer)`` of the untouched ``spec``, frozen and in eval mode."""
        if self._spec != spec:
            from karma_probe.model.backbones import load_backbone

            self._loaded, self._spec = None, None  # release the previous one first
            backbone, tok = load_backbone(spec, seed=READER_SEED)
            backbone.eval()
            self._loaded, self._spec = (backbone, tok), spec
        return self._loaded


def reader_spec(model: str) -> str:
    """The reader of a run trained on backbone ``model`` (TrainConfig.model): that backbone, untouched."""
    return model
