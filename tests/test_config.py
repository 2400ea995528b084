"""Settings precedence (flag > environment > file > default) and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from photoq.config import DEFAULT_OUTPUTS, ConfigError, load_settings

from .support import REPO_ROOT


def test_embedded_defaults_match_the_contract():
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.data_dir == Path("data")
    assert settings.processing.workers == (os.cpu_count() or 1)
    assert settings.upload.block_while_processing is False
    assert settings.queue.max_attempts == 3
    assert [o.name for o in settings.outputs] == [
        "thumb-150", "thumb-300", "thumb-600", "display-1080x1920", "display-2160x3840", "display-1038x1278"]


def test_the_shipped_config_file_only_restates_the_defaults():
    shipped = load_settings(REPO_ROOT / "config.toml", environ={})
    assert shipped == load_settings(environ={})


def test_precedence_flag_over_environment_over_file_over_default(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[processing]\nworkers = 3\n[queue]\nmax_attempts = 7\n')
    environ = {"PHOTOQ_PORT": "9100", "PHOTOQ_WORKERS": "4"}
    settings = load_settings(config, environ=environ, overrides={"server.port": "9200"})
    assert settings.server.port == 9200  # flag
    assert settings.processing.workers == 4  # environment
    assert settings.server.host == "0.0.0.0" and settings.queue.max_attempts == 7  # file
    assert settings.queue.lease_seconds == 60  # default


def test_config_path_from_environment(tmp_path):
    config = tmp_path / "other.toml"
    config.write_text("[upload]\nblock_while_processing = true\n")
    assert load_settings(environ={"PHOTOQ_CONFIG": str(config)}).upload.block_while_processing is True


def test_auth_token_from_environment():
    assert load_settings(environ={"PHOTOQ_AUTH_TOKEN": "a" * 20}).auth.token == "a" * 20


def test_outputs_can_be_configured(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[[outputs]]\nname = "t"\nkind = "thumbnail"\nwidth = 100\nheight = 100\n'
                      '[[outputs]]\nname = "big"\nkind = "variant"\nwidth = 2000\nheight = 2000\nformat = "jpeg"\n')
    outputs = load_settings(config, environ={}).outputs
    assert [(o.name, o.kind, o.format) for o in outputs] == [("t", "thumbnail", "webp"), ("big", "variant", "jpeg")]
    assert outputs != DEFAULT_OUTPUTS


@pytest.mark.parametrize("text, key", [
    ("[server]\nport = \"eighty\"\n", "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ("[processing]\nworkers = 0\n", "processing.workers"),
    ("[queue]\nmax_attempts = -1\n", "queue.max_attempts"),
    ("[upload]\nblock_while_processing = \"maybe\"\n", "upload.block_while_processing"),
    ("[processing]\nwebp_method = 9\n", "processing.webp_method"),
    ("[queue]\nno_such_setting = 1\n", "queue.no_such_setting"),
    ("[nonsense]\nx = 1\n", "[nonsense]"),
    ("[[outputs]]\nname = \"../x\"\nkind = \"thumbnail\"\nwidth = 1\nheight = 1\n", "outputs[0].name"),
    ("[server\n", "not valid TOML"),
])
def test_a_bad_value_names_its_key(tmp_path, text, key):
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert key in str(caught.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="PHOTOQ_WORKERS"):
        load_settings(environ={"PHOTOQ_WORKERS": "lots"})


def test_serve_with_a_bad_value_stops_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "photoq", "serve", "--port", "nope", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.port" in lines[0] and "command line" in lines[0]
    assert not (tmp_path / "d").exists()


def test_role_precedence_flag_over_environment_over_file_over_default(tmp_path):
    from photoq.cli import build_parser, settings_from

    config = tmp_path / "config.toml"
    config.write_text('[server]\nrole = "web"\n')
    assert load_settings(environ={}).server.role == "all"
    assert load_settings(config, environ={}).server.role == "web"
    assert load_settings(config, environ={"PHOTOQ_ROLE": "worker"}).server.role == "worker"
    assert load_settings(config, environ={"PHOTOQ_ROLE": "worker"}, overrides={"server.role": "all"}).server.role == "all"
    args = build_parser().parse_args(["serve", "--role", "worker", "--config", str(config)])
    assert settings_from(args).server.role == "worker"
    with pytest.raises(ConfigError, match="server.role"):
        load_settings(environ={"PHOTOQ_ROLE": "render"})
