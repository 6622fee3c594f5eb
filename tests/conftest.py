import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The README's main job, once per test session: ``karma-probe reproduce --preset tiny``.

    Trains action-only and KARMA on MovieLens-100k with the tiny backbone, captures, analyzes,
    and writes the report. Returns (runs_root, report_dir). The defaults are the ones that made
    reports/baselines/tiny.json, so the CI gate compares like with like.
    """
    from karma_probe.workflows.reproduce import Plan, reproduce

    root = tmp_path_factory.mktemp("tiny-study")
    plan = Plan(preset="tiny", runs_root=root / "runs", report_dir=root / "report")
    reproduce(plan, progress=False)
    return plan.runs_root, plan.report_dir


def pytest_collection_modifyitems(config, items):
    """Any test that needs the trained tiny study is in the slow tier, marked or not: the study
    trains, captures and analyzes for minutes, and the default ``pytest`` run is the fast tier."""
    for item in items:
        if "tiny_study" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
