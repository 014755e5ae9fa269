"""hub.config: the TOML config file of `opshub serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import HubConfig, load_config_file


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_config_file_sets_limits_and_timeouts(tmp_path):
    """Top-level settings and the [limits] table override the defaults, the rest stays."""
    path = _write(tmp_path, 'hub_id = "hub-b"\nslow_consumer_timeout = 3\n'
                            "[limits]\nmax_batch = 64\n")
    config = load_config_file(path, HubConfig(port=9000))
    assert (config.hub_id, config.slow_consumer_timeout, config.port) == ("hub-b", 3, 9000)
    assert config.limits.max_batch == 64
    assert config.limits.max_frame == HubConfig().limits.max_frame


def test_config_file_names_an_unknown_setting(tmp_path):
    """A misspelt key is refused with its name, not silently ignored."""
    path = _write(tmp_path, "max_outbound = 5\n[limits]\nmax_frames = 1\n")
    with pytest.raises(ValueError, match=r"limits\.max_frames, max_outbound"):
        load_config_file(path, HubConfig())


def test_config_file_names_a_value_of_the_wrong_type(tmp_path):
    """A string where a number belongs is refused with the key and the value."""
    path = _write(tmp_path, '[limits]\nmax_batch = "many"\n')
    with pytest.raises(ValueError, match=r"limits\.max_batch must be int, got 'many'"):
        load_config_file(path, HubConfig())


def test_config_file_that_is_not_toml_is_refused(tmp_path):
    """A file that does not parse gives a ValueError naming the file."""
    path = _write(tmp_path, "this is = = not toml")
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config_file(path, HubConfig())


def test_the_documented_example_loads(tmp_path):
    """The TOML example of docs/operations.md is a valid config file: its registrar lists
    become the tuples the hub compares with."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
    example = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config_file(_write(tmp_path, example), HubConfig())
    assert (config.registrar_roles, config.registrar_units) == (("ocu",), ())
    assert config.max_connections_per_source == 8192


def test_config_file_refuses_a_registrar_list_of_other_things(tmp_path):
    path = _write(tmp_path, "registrar_units = [1, 2]\n")
    with pytest.raises(ValueError, match="registrar_units must be tuple"):
        load_config_file(path, HubConfig())
