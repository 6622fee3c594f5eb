"""The run directory as one typed, versioned artifact (layout: checkpoints.md).

Everything that knows the format of ``runs/<name>/`` lives in this package; the commands (train,
capture, analyze, report, check, ls, the dashboard, the pipeline) read and write through it.

- ``layout``    every file name and schema string, once; :class:`RunPaths` builds a run's paths
- ``io``        atomic writes; JSON, JSON-lines and safetensors readers; provenance (git sha, versions)
- ``fields``    typed checks of decoded JSON, each error naming the file and the field
- ``run``       config.json, metrics.json, train_log.jsonl, a checkpoint's state.json, checkpoints/step-N
- ``capture``   capture/: THE :class:`Capture` (numpy arrays, torch view), read, write, validation
- ``analysis``  analysis.json: THE :class:`Record`, :class:`Analysis`, parse, read, write

It is the bottom layer: it imports only :mod:`karma_probe.core.errors` (and numpy, safetensors), never
a command, the capture library or the analyzers (tests/test_rundir.py checks). Code uses the names
below: ``from karma_probe.rundir import read_json, write_json, atomic_dir, Capture, ...``.

Imports: core.
"""

from karma_probe.rundir.analysis import Analysis, Record, parse_analysis, read_analysis, write_analysis
from karma_probe.rundir.capture import (Capture, Hidden, ProbeMap, capture_dir, check_target, read_capture,
                                        read_hidden, read_maps, write_capture)
from karma_probe.rundir.io import (PACKAGES, append_jsonl, atomic_dir, atomic_path, check_writable, config_hash,
                                   git_sha, load_arrays, load_tensors, now, read_json, read_jsonl, save_arrays,
                                   save_tensors, versions, write_json, write_text)
from karma_probe.rundir.layout import (ANALYSIS, ANALYSIS_SCHEMA, CAPTURE, CAPTURE_PARTS, CAPTURE_SCHEMA, CHECKPOINT,
                                       CHECKPOINTS, CONFIG, HIDDEN_FILE, MANIFEST, MAPS_FILE, METRICS, PROBE_SETS,
                                       RESUME, RUN_FILES, RUN_MARKERS, STAGES, STATE, STATS_FILE, TOKENIZER,
                                       TRAIN_LOG, RunPaths, part_file, step_dir)
from karma_probe.rundir.run import (checkpoint_state, checkpoint_step, checkpoint_train, intermediate_checkpoints,
                                    read_config, read_metrics, read_state, read_train_log)
