"""The demo app refuses a bad FEATURE_X, so a config restore can be drilled on the demo."""

from __future__ import annotations

import pytest

from app.demo.sampleapp.demoapp import config


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for key in config.KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("raw, expected", [("on", True), ("OFF", False), ("yes", True), ("0", False)])
def test_a_known_switch_is_read(tmp_path, raw, expected):
    env = tmp_path / ".env"
    env.write_text(f"FEATURE_X={raw}\n")
    assert config.load(env).feature_x is expected


def test_an_unknown_switch_stops_start_up_naming_the_value(tmp_path):
    env = tmp_path / ".env"
    env.write_text("FEATURE_X=maybe\n")
    with pytest.raises(ValueError, match="FEATURE_X must be on or off, got 'maybe'"):
        config.load(env)
