"""Configuration: errors name the key, environment overrides, the example file is honest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.cli import main
from server.config import SCHEMA, Config, ConfigError, example_yaml, load_config, parse_size

EXAMPLE = Path(__file__).resolve().parents[1] / "conf" / "davpack.example.yaml"


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "davpack.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ or {})


def _error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, environ)
    return info.value


def test_example_file_is_generated_from_the_schema() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == example_yaml()


def test_example_file_loads_to_the_defaults(tmp_path: Path) -> None:
    from_example = load_config(EXAMPLE, environ={})
    defaults = load_config(None, environ={})
    assert from_example.values == defaults.values
    documented = yaml.safe_load(example_yaml())
    assert {s: set(keys) for s, keys in documented.items()} == {
        s: set(keys) for s, keys in SCHEMA.items()}


def test_a_valid_file_is_loaded_and_converted(tmp_path: Path) -> None:
    config = _load(tmp_path, """
site:
  handle_prefix: "10673"
store:
  max_upload_size: 10 GiB
  fsync: "no"
server:
  port: 9000
  block_size: 512K
""")
    assert config.handle_prefix == "10673"
    assert config.max_upload_size == 10 * 1024**3
    assert config.get("store.fsync") is False
    assert config.get("server.port") == 9000
    assert config.get("server.block_size") == 512 * 1024
    assert config.get("server.threads") == 16  # default kept
    assert config.source == str(tmp_path / "davpack.yaml")


def test_unknown_section_is_named(tmp_path: Path) -> None:
    error = _error(tmp_path, "storage:\n  path: /x\n")
    assert [(d.field, d.message) for d in error.details] == [("storage", "unknown section")]
    assert "storage" in str(error)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    error = _error(tmp_path, "store:\n  maxsize: 10G\n")
    assert [(d.field, d.message) for d in error.details] == [("store.maxsize", "unknown key")]
    assert error.message == "invalid configuration (store.maxsize)"
    assert "max_upload_size" in (error.details[0].expected or "")


def test_bad_value_is_named(tmp_path: Path) -> None:
    error = _error(tmp_path, "server:\n  port: abc\n")
    (detail,) = error.details
    assert detail.field == "server.port"
    assert detail.message.startswith("invalid value from file")
    assert detail.found == "'abc'"
    assert "server.port" in str(error)


@pytest.mark.parametrize(("text", "field"), [
    ("server:\n  port: 70000\n", "server.port"),
    ("server:\n  port: true\n", "server.port"),
    ("store:\n  max_upload_size: ten gigabytes\n", "store.max_upload_size"),
    ("store:\n  max_upload_size: -5\n", "store.max_upload_size"),
    ("server:\n  block_size: 1.5M\n", "server.block_size"),
    ("store:\n  fsync: maybe\n", "store.fsync"),
    ("server:\n  log_format: xml\n", "server.log_format"),
    ("site:\n  handle_prefix: 'a/b'\n", "site.handle_prefix"),
    ("site:\n  name: [1, 2]\n", "site.name"),
])
def test_bad_values_name_their_key(tmp_path: Path, text: str, field: str) -> None:
    assert [d.field for d in _error(tmp_path, text).details] == [field]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    error = _error(tmp_path, "server:\n  port: abc\n  colour: red\nstore:\n  maxsize: 1\n")
    assert sorted(d.field or "" for d in error.details) == [
        "server.colour", "server.port", "store.maxsize"]


def test_environment_override_names_the_variable(tmp_path: Path) -> None:
    error = _error(tmp_path, "server:\n  port: 9000\n", {"DAVPACK_PORT": "x"})
    (detail,) = error.details
    assert detail.field == "server.port"
    assert "environment variable DAVPACK_PORT" in detail.message
    assert "DAVPACK_PORT" in str(error)


def test_environment_overrides_the_file_and_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "davpack.yaml"
    path.write_text("server:\n  port: 9000\nstore:\n  max_upload_size: 1M\n", encoding="utf-8")
    env = {"DAVPACK_PORT": "9100", "DAVPACK_MAX_UPLOAD_SIZE": "2 MiB"}
    config = load_config(path, environ=env)
    assert (config.get("server.port"), config.max_upload_size) == (9100, 2 * 1024**2)
    config = load_config(path, environ=env, overrides={"server.port": 0})
    assert config.get("server.port") == 0


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("site:\n  name: From env\n", encoding="utf-8")
    config = load_config(environ={"DAVPACK_CONFIG": str(path)})
    assert config.get("site.name") == "From env"


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, overrides={"store.nope": 1})
    assert [d.field for d in info.value.details] == ["store.nope"]


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    error = _error(tmp_path, "site:\n  name: ok\nserver:\n  port: [unclosed\n")
    assert error.details[0].file == str(tmp_path / "davpack.yaml")
    assert error.details[0].line is not None and error.details[0].line >= 4


def test_non_mapping_file_and_section_are_refused(tmp_path: Path) -> None:
    assert "mapping" in _error(tmp_path, "- a\n- b\n").message
    error = _error(tmp_path, "server: 8080\n")
    assert [(d.field, d.message) for d in error.details] == [
        ("server", "a section must be a mapping")]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert _load(tmp_path, "").values == load_config(None, environ={}).values


@pytest.mark.parametrize(("value", "size"), [
    (0, 0), (1048576, 1048576), ("17", 17), ("5 B", 5), ("1K", 1024), ("1 KiB", 1024),
    ("512M", 512 * 1024**2), ("1 MiB", 1024**2), ("10 GiB", 10 * 1024**3),
    ("2tb", 2 * 1024**4), (" 3 G ", 3 * 1024**3),
])
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [True, -1, "1.5G", "ten", "10 PB", "", "G"])
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


def test_cli_reports_config_errors_by_key(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "davpack.yaml"
    path.write_text("store:\n  maxsize: 1G\n", encoding="utf-8")
    assert main(["--config", str(path), "db", "upgrade"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("davpack: error: invalid configuration (store.maxsize)")
    assert "store.maxsize: unknown key" in captured.err
