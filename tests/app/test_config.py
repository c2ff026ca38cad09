"""Configuration: defaults, a TOML file, VISITBRIDGE_<KEY> variables, and refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.config import Config, ConfigError, load
from tests.support.process import ROOT, free_port


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "visitbridge.toml"
    path.write_text(text)
    return path


def error_of(path: Path | None = None, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, environ=env)
    return str(info.value)


def test_defaults() -> None:
    config = load(environ={})
    assert config == Config()
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.data_dir == Path("data")
    assert config.keys_dir == Path("data/keys/public")
    assert config.base_url == "http://127.0.0.1:8080"
    assert config.ice_loopback is False
    assert config.ice_servers == ()
    assert config.max_visitors == 4


def test_the_real_environment_is_read_when_none_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISITBRIDGE_PORT", "9000")
    assert load().port == 9000


def test_toml_file(tmp_path: Path) -> None:
    path = toml(tmp_path, """
host = "0.0.0.0"
port = 8443
public_url = "https://visits.example-prison.gov/"
data_dir = "/var/lib/visitbridge"
max_visitors = 2
ice_loopback = true
ice_servers = ["stun:stun.example:3478", "stun:backup.example:3478"]
""")
    config = load(path, environ={})
    assert (config.host, config.port) == ("0.0.0.0", 8443)
    assert config.base_url == "https://visits.example-prison.gov"
    assert config.data_dir == Path("/var/lib/visitbridge")
    assert config.keys_dir == Path("/var/lib/visitbridge/keys/public")
    assert config.max_visitors == 2
    assert config.ice_loopback is True
    assert config.ice_servers == ("stun:stun.example:3478", "stun:backup.example:3478")
    assert config.token_issuer == "visitbridge-dev"  # not in the file: default


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, 'port = 8443\nhost = "0.0.0.0"\ntoken_keys_dir = "/etc/keys"\n')
    config = load(path, environ={"VISITBRIDGE_PORT": "9000",
                                 "VISITBRIDGE_TOKEN_ISSUER": "records.example"})
    assert config.port == 9000
    assert config.host == "0.0.0.0"
    assert config.token_issuer == "records.example"
    assert config.keys_dir == Path("/etc/keys")


def test_invalid_environment_value_names_the_variable() -> None:
    message = error_of(VISITBRIDGE_PORT="eighty")
    assert "VISITBRIDGE_PORT" in message
    assert "eighty" in message


def test_invalid_file_value_names_the_key(tmp_path: Path) -> None:
    assert error_of(toml(tmp_path, 'max_visitors = "many"\n')).startswith("max_visitors:")


def test_out_of_range_values_name_the_key() -> None:
    assert error_of(VISITBRIDGE_PORT="70000").startswith("port:")
    assert error_of(VISITBRIDGE_MAX_VISITORS="0").startswith("max_visitors:")
    assert error_of(VISITBRIDGE_MAX_VIDEO_BITRATE="5000").startswith("max_video_bitrate:")
    assert error_of(VISITBRIDGE_LOG_LEVEL="chatty").startswith("log_level:")
    assert "token_issuer" in error_of(VISITBRIDGE_TOKEN_ISSUER="")
    assert error_of(VISITBRIDGE_DATA_DIR="").startswith("data_dir:")


def test_unknown_file_key_is_rejected(tmp_path: Path) -> None:
    message = error_of(toml(tmp_path, "prot = 8080\n"))
    assert message.startswith("prot:")
    assert "unknown" in message


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    broken = toml(tmp_path, "port = \n")
    assert str(broken) in error_of(broken)
    missing = tmp_path / "missing.toml"
    assert str(missing) in error_of(missing)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on"])
def test_true_booleans(raw: str) -> None:
    assert load(environ={"VISITBRIDGE_ICE_LOOPBACK": raw}).ice_loopback is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", ""])
def test_false_booleans(raw: str) -> None:
    assert load(environ={"VISITBRIDGE_ICE_LOOPBACK": raw}).ice_loopback is False


def test_an_unclear_boolean_is_refused() -> None:
    assert "VISITBRIDGE_ICE_LOOPBACK" in error_of(VISITBRIDGE_ICE_LOOPBACK="maybe")


def test_environment_lists_are_comma_separated() -> None:
    config = load(environ={"VISITBRIDGE_ICE_SERVERS": " stun:a.example:3478, stun:b.example,"})
    assert config.ice_servers == ("stun:a.example:3478", "stun:b.example")
    assert load(environ={"VISITBRIDGE_ICE_SERVERS": ""}).ice_servers == ()


def test_command_line_stops_on_invalid_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VISITBRIDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VISITBRIDGE_PORT", "eighty")
    assert main(["keys", "generate", "--kid", "records-1"]) == 2
    assert "VISITBRIDGE_PORT" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing was written


def test_media_limits_are_read_and_range_checked() -> None:
    config = load(environ={"VISITBRIDGE_MAX_SSRCS_PER_CONNECTION": "4",
                           "VISITBRIDGE_NACK_MAX_SEQS": "32",
                           "VISITBRIDGE_RTX_MAX_PACKETS_PER_S": "100",
                           "VISITBRIDGE_REMB_FLOOR_BPS": "200000"})
    assert (config.max_ssrcs_per_connection, config.nack_max_seqs, config.rtx_max_packets_per_s,
            config.remb_floor_bps) == (4, 32, 100, 200_000)
    # A receiver report holds at most 31 blocks; audio, video and RTX need 3 SSRCs.
    assert error_of(VISITBRIDGE_MAX_SSRCS_PER_CONNECTION="32").startswith(
        "max_ssrcs_per_connection:")
    assert error_of(VISITBRIDGE_MAX_SSRCS_PER_CONNECTION="2").startswith(
        "max_ssrcs_per_connection:")
    assert "nack_max_seqs" in error_of(VISITBRIDGE_NACK_MAX_SEQS="0")
    assert "rtx_max_packets_per_s" in error_of(VISITBRIDGE_RTX_MAX_PACKETS_PER_S="0")
    assert error_of(VISITBRIDGE_REMB_FLOOR_BPS="900000").startswith("remb_floor_bps:")


@pytest.mark.parametrize("url", ["http://records.example/jwks.json", "http://10.0.0.5/jwks",
                                 "ftp://records.example/jwks", "records.example/jwks"])
def test_a_jwks_url_must_be_https(url: str) -> None:
    assert error_of(VISITBRIDGE_TOKEN_JWKS_URL=url).startswith("token_jwks_url:")


@pytest.mark.parametrize("url", ["https://records.example/jwks.json", "http://127.0.0.1:9/j",
                                 "http://localhost/jwks", "http://[::1]:8443/jwks"])
def test_https_or_loopback_http_jwks_urls_are_accepted(url: str) -> None:
    assert load(environ={"VISITBRIDGE_TOKEN_JWKS_URL": url}).token_jwks_url == url


def test_serve_stops_on_a_plain_http_jwks_url(tmp_path: Path) -> None:
    env = {**os.environ, "VISITBRIDGE_DATA_DIR": str(tmp_path / "data"),
           "VISITBRIDGE_PORT": str(free_port()),
           "VISITBRIDGE_TOKEN_JWKS_URL": "http://records.example/jwks.json"}
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "token_jwks_url" in done.stderr
    assert not (tmp_path / "data").exists()


def test_nodes_encrypting_recordings_must_share_the_data_keys(tmp_path: Path) -> None:
    """Otherwise the node that takes a visit over cannot read what was recorded before."""
    env = {"VISITBRIDGE_REDIS_URL": "redis://127.0.0.1:6379/0", "VISITBRIDGE_NODE_ID": "a",
           "VISITBRIDGE_RECORDINGS_KEY_FILE": str(tmp_path / "keyring.json")}
    with pytest.raises(ConfigError, match="recordings_data_keys_path"):
        load(None, env)
    shared = tmp_path / "shared-keys"
    config = load(None, {**env, "VISITBRIDGE_RECORDINGS_DATA_KEYS_PATH": str(shared)})
    assert config.data_keys_dir == shared
