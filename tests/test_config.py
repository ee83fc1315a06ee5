from pathlib import Path

import pytest
import yaml

from webli.pipeline.config import ConfigError, apply_overrides, config_to_yaml, load_config, validate_config


def test_minimal_config_gets_defaults():
    config = validate_config({"output": "/tmp/x"})
    assert config.crawl.allow_private_networks is False
    assert config.download.image_size == 256


def test_unknown_key_is_named_with_the_keys_that_exist():
    with pytest.raises(ConfigError) as err:
        validate_config({"output": "/tmp/x", "crawl": {"max_page": 3}})
    message = str(err.value)
    assert "crawl.max_page: unknown key" in message
    assert "max_pages" in message


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"crawll: unknown key; expected one of \[.*'crawl'"):
        validate_config({"output": "/tmp/x", "crawll": {}})


def test_bad_value_names_key_and_expectation():
    with pytest.raises(ConfigError, match=r"download.image_size: Input should be greater than or equal to 8"):
        validate_config({"output": "/tmp/x", "download": {"image_size": 0}})


def test_missing_output_is_an_error():
    with pytest.raises(ConfigError, match="output: required key is missing"):
        validate_config({})


def test_seeds_must_be_http():
    with pytest.raises(ConfigError, match="seeds must be http"):
        validate_config({"output": "/tmp/x", "crawl": {"seeds": ["file:///etc/passwd"]}})


def test_overrides_parse_yaml_values_and_create_sections():
    raw = apply_overrides({"output": "a"}, ["crawl.max_pages=7", "crawl.seeds=[http://127.0.0.1/]"])
    assert raw["crawl"] == {"max_pages": 7, "seeds": ["http://127.0.0.1/"]}


def test_load_config_round_trips_through_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("output: /tmp/y\ncrawl:\n  max_depth: 1\n")
    config = load_config(path, ["download.shard_size=10"])
    assert config.crawl.max_depth == 1 and config.download.shard_size == 10
    reloaded = validate_config(yaml.safe_load(config_to_yaml(config)))
    assert reloaded == config


def test_missing_and_malformed_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


def test_large_copy_smaller_than_image_size_is_refused():
    with pytest.raises(ConfigError, match="large_copy_size"):
        validate_config({"output": "x", "download": {"image_size": 256, "large_copy_size": 100}})


def test_the_example_config_lists_the_defaults():
    """configs/example.yaml documents every setting at its default: a default changed in the schema and not
    there (or the reverse) fails here."""
    example = load_config(Path(__file__).resolve().parent.parent / "configs" / "example.yaml")
    assert example == validate_config({"output": example.output})
