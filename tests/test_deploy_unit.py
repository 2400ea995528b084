"""deploy/photoq.service: what it promises (unprivileged, restarts, stops gracefully, sandboxed) and that it agrees
with photoq's command line, its settings and the README's "Install on a Raspberry Pi"."""

from __future__ import annotations

import ctypes.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from photoq.cli import build_parser
from photoq.config import ProcessingSettings, load_settings

from .service_sandbox import read_unit

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "photoq.service"
SANDBOX = Path(__file__).resolve().parent / "service_sandbox.py"
SHUTDOWN_EXTRA_SECONDS = 5  # photoq.cli.serve gives aiohttp shutdown_grace_seconds + 5 to close connections
TIME_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60,
              "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600}

needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed on this machine")


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return read_unit(UNIT)


@pytest.fixture(scope="module")
def service(unit) -> dict[str, str]:
    """[Service] with the last value of each key, as systemd reads single-valued keys."""
    return {key: values[-1] for key, values in unit["Service"].items()}


def seconds(timespan: str) -> float:
    """A systemd time span ("90", "60s", "1min 30s") in seconds."""
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", timespan):
        total += float(number) * (TIME_UNITS[suffix] if suffix else 1)
    return total


def readme_install_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Install on a Raspberry Pi")
    return text[start:text.index("\n## ", start + 1)]


def test_service_runs_photoq_as_an_unprivileged_user_with_its_own_directories(service):
    assert service["User"] not in ("", "root", "0") and service["Group"] not in ("", "root", "0")
    state, cache = f"/var/lib/{service['StateDirectory']}", f"/var/cache/{service['CacheDirectory']}"
    assert service["WorkingDirectory"] == state
    assert f"SHIV_ROOT={cache}" in service["Environment"].split(), "photoq.pyz must unpack into the cache directory"
    assert service["UMask"] == "0027"


def test_exec_start_is_a_photoq_serve_command_line_photoq_accepts(service):
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/usr/bin/python3" and argv[1].endswith("/photoq.pyz")
    args = build_parser().parse_args(argv[2:])
    assert args.command == "serve"
    assert args.config is not None and args.config.is_absolute() and args.config.name == "config.toml"


def test_service_restarts_on_failure_but_not_after_a_configuration_error(service, tmp_path):
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0
    bad = tmp_path / "config.toml"
    bad.write_text("[server]\nport = 0\n")
    result = subprocess.run([sys.executable, "-m", "photoq", "serve", "--config", str(bad)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode in {int(code) for code in service["RestartPreventExitStatus"].split()}, result.stderr


def test_stop_gives_photoq_its_whole_shutdown_grace_and_signals_only_the_main_process(service):
    grace = ProcessingSettings().shutdown_grace_seconds
    assert seconds(service["TimeoutStopSec"]) > grace + SHUTDOWN_EXTRA_SECONDS
    # control-group would SIGTERM the image processes too, killing the jobs photoq is letting finish.
    assert service["KillMode"] == "mixed"
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"


def test_service_is_hardened(unit, service):
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    filters = unit["Service"]["SystemCallFilter"]
    assert filters[0] == "@system-service" and "~@privileged" in filters
    assert not any("@resources" in f for f in filters), "the image processes call setpriority (nice +10)"


def test_readme_install_section_agrees_with_the_unit_and_with_photoq(service, tmp_path):
    section = readme_install_section()
    argv = shlex.split(service["ExecStart"])
    for path in (argv[1], argv[argv.index("--config") + 1], f"/var/cache/{service['CacheDirectory']}",
                 "deploy/photoq.service", "/etc/systemd/system/photoq.service"):
        assert path in section, f"{path} is not in the README's install section"

    (toml_block,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    config = tmp_path / "config.toml"
    lines = [line.strip() for line in toml_block.splitlines()]
    suggested = tmp_path / "suggested.toml"  # the settings shown commented out must exist too
    suggested.write_text("\n".join(re.sub(r"^#\s*(\w+\s*=)", r"\1", line) for line in lines))
    assert load_settings(suggested, environ={}).processing.memory_budget_mb == 1024
    config.write_text("\n".join(lines))
    settings = load_settings(config, environ={})
    assert str(settings.data_dir) == f"/var/lib/{service['StateDirectory']}"
    assert settings.server.host == "0.0.0.0"
    assert tomllib.loads(config.read_text())["processing"]["workers"] == settings.processing.workers

    commands = re.findall(r"python3 \S*photoq\.pyz (.*)", section)
    assert commands, "the README shows no photoq.pyz command"
    for command in commands:
        build_parser().parse_args(shlex.split(command.split("#")[0]))


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit():
    result = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=120)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


@needs_systemd_analyze
def test_systemd_rates_the_units_exposure_ok():
    if "--offline" not in subprocess.run(["systemd-analyze", "security", "--help"], capture_output=True,
                                         text=True).stdout:
        pytest.skip("this systemd-analyze cannot review a unit file offline (needs systemd 252 or newer)")
    # --threshold is in tenths: fail when the overall exposure is above 2.0 (systemd calls up to 1.9 "OK").
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(UNIT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


@needs_systemd_analyze
@pytest.mark.skipif(ctypes.util.find_library("seccomp") is None, reason="libseccomp is not installed")
def test_sandbox_enforces_the_units_system_call_restrictions(tmp_path):
    """The sandbox tests/test_pyz.py runs photoq.pyz in must really refuse what the unit forbids."""
    probe = """
import errno, mmap, os, socket
def outcome(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode[exc.errno]
print(outcome(lambda: os.chroot("/")), outcome(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
      outcome(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)),
      outcome(lambda: socket.socket(socket.AF_INET).close()), outcome(lambda: socket.socket(socket.AF_UNIX).close()),
      outcome(lambda: os.setpriority(os.PRIO_PROCESS, 0, 10)))
"""
    result = subprocess.run([sys.executable, str(SANDBOX), str(UNIT), "--", sys.executable, "-c", probe],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    chroot, netlink, wx_memory, inet, unix, nice = result.stdout.split()
    # chroot is refused by the filter even to root; without the filter root may chroot("/").
    assert (chroot, netlink, wx_memory) == ("EPERM", "EAFNOSUPPORT", "EPERM")
    assert (inet, unix, nice) == ("allowed", "allowed", "allowed")


def test_open_file_limit_leaves_the_default_connection_cap_its_room(service):
    from photoq.config import ServerSettings
    from photoq.web.connections import ACCEPT_BATCH, ACCEPT_BATCHES_IN_FLIGHT, RESERVED_DESCRIPTORS

    # systemd's default soft limit (1024) would lower max_connections; the unit raises it above cap + reserve.
    needed = ServerSettings().max_connections + RESERVED_DESCRIPTORS + ACCEPT_BATCH * ACCEPT_BATCHES_IN_FLIGHT
    assert int(service["LimitNOFILE"]) >= needed
