"""The v3 study's selection rule (scripts/select_v3.py): validation HR@10, lm_ppl on near ties."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("select_v3", Path(__file__).parents[1] / "scripts" / "select_v3.py")
select_v3 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(select_v3)


def _r(hr, ppl):
    return {"valid_hr@10": hr, "lm_ppl": ppl, "lm_ppl_ci": None}


def test_higher_validation_hr_wins():
    best, why = select_v3.choose(_r(0.10, 15.0), {"a": _r(0.12, 20.0), "b": _r(0.105, 15.0)})
    assert best == "a" and "higher validation HR@10" in why


def test_near_tie_goes_to_lower_lm_ppl():
    best, why = select_v3.choose(_r(0.10, 15.0), {"a": _r(0.121, 20.0), "b": _r(0.118, 16.0)})
    assert best == "b" and "lower lm_ppl" in why


def test_every_candidate_below_action_only_is_said():
    _, why = select_v3.choose(_r(0.20, 15.0), {"a": _r(0.12, 20.0), "b": _r(0.11, 16.0)})
    assert "add a third setting" in why
