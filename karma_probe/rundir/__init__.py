"""The run directory as one typed, versioned artifact (layout: checkpoints.md).

Everything that knows the format of ``runs/<name>/`` lives in this package; the commands (train,
capture, analyze, report, check, ls, the dashboard, the pipeline) read and write through it.

- ``layout``   every file name and schema string, once; :class:`RunPaths` builds a run's paths
- ``io``       atomic writes, JSON / JSON lines / safetensors readers, provenance (git sha, versions)

It is the bottom layer: it imports only :mod:`karma_probe.errors`, never a command, the capture
library or the analyzers (``tests/test_rundir.py`` checks). The names below are the public API;
``from karma_probe.rundir import read_json, write_json, atomic_dir, ...`` is how code uses it.
"""

from karma_probe.rundir.io import (PACKAGES, append_jsonl, atomic_dir, atomic_path, check_writable, config_hash,
                                   git_sha, load_arrays, load_tensors, now, read_json, read_jsonl, save_arrays,
                                   save_tensors, versions, write_json)
from karma_probe.rundir.layout import (ANALYSIS, ANALYSIS_SCHEMA, CAPTURE, CAPTURE_PARTS, CAPTURE_SCHEMA, CHECKPOINT,
                                       CHECKPOINTS, CONFIG, HIDDEN_FILE, MANIFEST, MAPS_FILE, METRICS, PROBE_SETS,
                                       RESUME, RUN_FILES, RUN_MARKERS, STAGES, STATE, STATS_FILE, TOKENIZER,
                                       TRAIN_LOG, RunPaths, part_file, step_dir)
