"""JobSettings travel as JSON (to actors, into run folders): round trips are exact, bad values are errors."""
from __future__ import annotations

import json

import pytest

from artmator.pipeline.settings import JobSettings, paper_settings, quick_settings, settings_from_json


@pytest.mark.parametrize("settings", [quick_settings(), paper_settings(), JobSettings()])
def test_settings_round_trip_through_json(settings):
    assert settings_from_json(json.dumps(settings.to_dict())) == settings


def test_unknown_and_mistyped_settings_are_errors():
    d = quick_settings().to_dict()
    with pytest.raises(ValueError, match="unknown TuneConfig settings"):
        settings_from_json(json.dumps({**d, "tune": {**d["tune"], "stage3": {}}}))
    bad = json.loads(json.dumps(d))
    bad["tune"]["stage1"]["steps"] = "sixty"
    with pytest.raises(ValueError, match="'sixty' is not a int"):
        settings_from_json(json.dumps(bad))
    bad = json.loads(json.dumps(d))
    bad["device"] = 3
    with pytest.raises(ValueError, match="3 is not a str"):
        settings_from_json(json.dumps(bad))
    ok = json.loads(json.dumps(d))
    ok["tune"]["stage1"]["lr"] = 1                                 # an int where a float is expected is fine
    assert settings_from_json(json.dumps(ok)).tune.stage1.lr == 1.0
