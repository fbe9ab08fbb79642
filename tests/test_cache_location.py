"""Where the package keeps its caches: each platform's user cache folder (platformdirs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lm_eval_semcal.demo import models as demo_model
from lm_eval_semcal.grouping.judgement_cache import cache_file, cache_root, default_cache_path

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the XDG base directories are Linux's convention")


def test_the_caches_follow_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(demo_model.CACHE_ENV, raising=False)
    assert cache_root() == tmp_path / "xdg" / "lm_eval_semcal"
    assert default_cache_path() == tmp_path / "xdg" / "lm_eval_semcal" / "judgements.sqlite"
    assert cache_file("default") == default_cache_path()
    config = demo_model.DemoConfig()
    assert demo_model.cache_dir(config) == tmp_path / "xdg" / "lm_eval_semcal" / "demo" / config.key()


def test_without_xdg_cache_home_the_caches_are_in_dot_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "lm_eval_semcal"


def test_semcal_demo_cache_still_moves_the_demo_models(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(demo_model.CACHE_ENV, str(tmp_path / "demo-models"))
    config = demo_model.DemoConfig()
    assert demo_model.cache_dir(config) == Path(tmp_path / "demo-models" / config.key())
