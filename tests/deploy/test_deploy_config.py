"""deploy/memos.example.toml: every Settings key, commented, read by memos' own loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memos.config import Settings, load_settings
from memos.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "memos.example.toml"


def test_example_covers_every_settings_key(validate, no_memos_env):
    keys = validate.settings_keys()
    # the walk reaches nested models' fields, so a key added to any of them is caught here
    assert {"home", "engine", "storage.url", "embedder.options", "index.fusion", "residency.policy"} <= keys
    documented = validate.config_keys(validate.read_config(EXAMPLE, optional=True))
    assert keys - documented == set(), "add the missing keys to deploy/memos.example.toml"
    assert documented - keys == set()


def test_active_values_are_exactly_the_defaults(validate, no_memos_env, tmp_path):
    from_file = validate.load_config(EXAMPLE)
    defaults = load_settings(tmp_path)
    assert from_file.model_dump(exclude={"home", "models_dir"}) == defaults.model_dump(exclude={"home", "models_dir"})
    assert "home" not in validate.read_config(EXAMPLE)  # the loader would ignore it


def test_optional_example_values_load(validate, no_memos_env):
    s = validate.load_config(EXAMPLE, optional=True)
    assert s.storage.url.startswith("redis://")
    assert s.embedder.options == {"precision": "auto", "batch_size": 64, "max_tokens": 256}
    assert s.principal == "alice" and s.blobs_dir is not None and str(s.models_dir).startswith("/shared")


def test_every_key_has_a_comment(validate):
    assert validate.undocumented_keys(EXAMPLE) == []


def test_check_config_passes(validate, no_memos_env):
    out = validate.check_config(EXAMPLE)
    assert out["keys"] == len(validate.settings_keys())


def test_write_json_is_read_by_memos(validate, no_memos_env, tmp_path):
    toml = tmp_path / "memos.toml"
    toml.write_text(EXAMPLE.read_text().replace("search_depth = 100", "search_depth = 40")
                    .replace('# url = "redis://', 'url = "redis://'))
    home = tmp_path / "home"
    validate.write_config_json(toml, home / "config.json")
    data = json.loads((home / "config.json").read_text())
    assert data["index"]["search_depth"] == 40
    settings = load_settings(home)
    assert isinstance(settings, Settings) and settings.index.search_depth == 40
    assert settings.storage.url.startswith("redis://") and settings.home == home


@pytest.mark.parametrize("edit", [
    ("fusion = \"score\"", "fusion = \"mean\""),            # not a fusion mode
    ("dense_weight = 0.6", "dense_weight = 1.5"),           # out of 0..1
    ("part_weight = 0.75", "part_weight = -0.1"),           # out of 0..1
    ("hnsw_threshold = 20000", "hnsw_treshold = 20000"),    # misspelt key: extra keys are forbidden
])
def test_bad_values_fail_in_memos_loader(validate, no_memos_env, tmp_path, edit):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace(*edit))
    with pytest.raises(InvalidInput):
        validate.check_config(bad)
    with pytest.raises(InvalidInput):
        validate.write_config_json(bad, tmp_path / "home" / "config.json")
    assert not (tmp_path / "home" / "config.json").exists()  # nothing written for a bad file


def test_missing_or_uncommented_keys_are_reported(validate, no_memos_env, tmp_path):
    text = EXAMPLE.read_text()
    no_policy = tmp_path / "a.toml"
    no_policy.write_text(text.replace('policy = "lru"\n', ""))
    with pytest.raises(validate.DeployError, match="residency.policy"):
        validate.check_config(no_policy)
    bare = tmp_path / "b.toml"
    bare.write_text(text.replace("# Vector index plugin.\n", ""))
    with pytest.raises(validate.DeployError, match="without a comment"):
        validate.check_config(bare)


def test_not_toml_is_a_clear_error(validate, tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[index\nname = 'faiss'\n")
    with pytest.raises(validate.DeployError, match="not valid TOML"):
        validate.read_config(bad)
