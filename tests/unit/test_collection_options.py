"""A collection's recorded options override the process settings for its documents, and only where they differ."""

from __future__ import annotations

from pathlib import Path

from core.config import Settings
from ingest.profile import effective_settings, profile_options


def test_options_equal_to_the_settings_reuse_them(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    assert effective_settings(settings, profile_options(settings)) is settings
    assert effective_settings(settings, None) is settings


def test_differing_options_override_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    options = {**profile_options(settings), "chunk_size_tokens": 64, "keyword_tokenizer": "simple", "port": 1}
    effective = effective_settings(settings, options)
    assert (effective.chunk_size_tokens, effective.keyword_tokenizer) == (64, "simple")
    assert effective.port == settings.port and effective.data_dir == settings.data_dir
    assert settings.chunk_size_tokens != 64  # the process settings are untouched
