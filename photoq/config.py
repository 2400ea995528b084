"""Settings: built-in defaults < config.toml < environment < command-line flags, in one frozen dataclass."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from .memory_budget import default_budget_mb

MIB = 1024 * 1024


class ConfigError(Exception):
    """A setting is wrong; the message is one line naming the key."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    log_level: str = "info"
    # Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed; empty: nobody's.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    # Connections (photoq serve): slow or silent clients are closed, and their number is bounded.
    keepalive_seconds: float = 30.0  # an idle connection is closed after this long
    header_timeout_seconds: float = 10.0  # a request's headers must all arrive within this of its first byte
    body_timeout_seconds: float = 30.0  # a request body sending less than body_min_bytes_per_second over
    body_min_bytes_per_second: int = 1024  # ... a window this long is cut off
    max_connections: int = 1000  # lowered at start to fit the open-file limit
    max_uploads: int = 32  # upload requests (multipart and resumable PATCH) at once; more get 503
    max_event_streams: int = 64  # open /api/events streams; more get 503


@dataclass(frozen=True)
class AuthSettings:
    token: str | None = None
    # Web sessions slide: each use extends one to session_idle_days from then, never beyond session_max_days after
    # the login.
    session_idle_days: float = 14.0
    session_max_days: float = 90.0
    login_code_minutes: float = 15.0  # how long a printed one-time login link works
    # Wrong tokens or codes from one address: after login_free_failures, each further failure locks that address
    # out for twice as long as the last (1 s, 2 s, 4 s, ...), up to login_max_lockout_seconds.
    login_free_failures: int = 5
    login_max_lockout_seconds: float = 900.0


@dataclass(frozen=True)
class UploadSettings:
    max_file_bytes: int = 200 * MIB
    max_files_per_request: int = 500
    max_request_bytes: int = 8 * 1024 * MIB
    max_pixels: int = 150_000_000
    block_while_processing: bool = False
    # Files above this size are sent by the web UI with the tus protocol (/api/uploads), so they resume after a
    # dropped connection; 0 sends every file that way.
    resumable_threshold_bytes: int = 20 * MIB
    resumable_expire_hours: float = 24.0  # an unfinished resumable upload is removed this long after its last byte


@dataclass(frozen=True)
class QueueSettings:
    max_attempts: int = 3
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    lease_seconds: float = 60.0
    sweep_interval_seconds: float = 30.0
    max_pending: int = 20_000
    breaker_threshold: int = 5
    breaker_cooldown_seconds: float = 60.0
    keep_done_days: float = 30.0  # complete jobs are deleted this long after finishing; 0 keeps them forever


@dataclass(frozen=True)
class ProcessingSettings:
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    shutdown_grace_seconds: float = 30.0
    job_timeout_seconds: float = 600.0
    max_tasks_per_child: int = 500
    webp_method: int = 0
    quality: int = 80
    avif_speed: int = 8  # AVIF encoder speed 0 (slowest, smallest) to 10, for outputs in the avif format
    # A job starts only when its estimated peak fits beside the running ones; 0 = no limit. Default: half the RAM.
    memory_budget_mb: int = field(default_factory=default_budget_mb)


@dataclass(frozen=True)
class StorageSettings:
    min_free_bytes: int = 256 * MIB
    fsync: bool = True


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = True
    capacity: float = 600.0
    refill_per_second: float = 60.0
    file_request_cost: float = 0.1


@dataclass(frozen=True)
class MetricsSettings:
    public: bool = False


@dataclass(frozen=True)
class Output:
    name: str
    kind: str  # "thumbnail" or "variant": which job makes it
    width: int
    height: int
    format: str = "webp"


DEFAULT_OUTPUTS: tuple[Output, ...] = (
    Output("thumb-150", "thumbnail", 150, 150),
    Output("thumb-300", "thumbnail", 300, 300),
    Output("thumb-600", "thumbnail", 600, 600),
    Output("display-1080x1920", "variant", 1080, 1920),
    Output("display-2160x3840", "variant", 2160, 3840),
    Output("display-1038x1278", "variant", 1038, 1278),
)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    upload: UploadSettings = field(default_factory=UploadSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    outputs: tuple[Output, ...] = DEFAULT_OUTPUTS

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    def outputs_for(self, kind: str) -> tuple[Output, ...]:
        return tuple(o for o in self.outputs if o.kind == kind)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "auth": AuthSettings,
    "upload": UploadSettings,
    "queue": QueueSettings,
    "processing": ProcessingSettings,
    "storage": StorageSettings,
    "ratelimit": RateLimitSettings,
    "metrics": MetricsSettings,
}

# Environment variable -> (section, key), per the HTTP contract.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "PHOTOQ_HOST": ("server", "host"),
    "PHOTOQ_PORT": ("server", "port"),
    "PHOTOQ_DATA_DIR": ("server", "data_dir"),
    "PHOTOQ_WORKERS": ("processing", "workers"),
    "PHOTOQ_AUTH_TOKEN": ("auth", "token"),
    "PHOTOQ_TRUSTED_PROXIES": ("server", "trusted_proxies"),  # comma-separated
}

# Settings that must be > 0 (others may be 0, e.g. min_free_bytes).
POSITIVE = {
    "server.port",
    "upload.max_file_bytes", "upload.max_files_per_request", "upload.max_pixels", "upload.max_request_bytes",
    "upload.resumable_expire_hours",
    "auth.session_idle_days", "auth.session_max_days", "auth.login_code_minutes", "auth.login_max_lockout_seconds",
    "server.keepalive_seconds", "server.header_timeout_seconds", "server.body_timeout_seconds",
    "server.max_connections", "server.max_uploads", "server.max_event_streams",
    "queue.max_attempts", "queue.lease_seconds", "queue.sweep_interval_seconds", "queue.max_pending",
    "queue.breaker_threshold",
    "processing.workers", "processing.max_tasks_per_child", "processing.job_timeout_seconds", "processing.quality",
    "ratelimit.capacity", "ratelimit.refill_per_second",
}
CHOICES = {
    "server.log_level": ("debug", "info", "warning", "error"),
}
OUTPUT_KINDS = ("thumbnail", "variant")
OUTPUT_FORMATS = ("webp", "jpeg", "png", "avif")


def default_config_path(environ: Mapping[str, str]) -> Path | None:
    if environ.get("PHOTOQ_CONFIG"):
        return Path(environ["PHOTOQ_CONFIG"])
    local = Path("config.toml")
    return local if local.is_file() else None


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings. `overrides` maps "section.key" to values given on the command line."""
    environ = os.environ if environ is None else environ
    path = config_path or default_config_path(environ)
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(path)

    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for section, table in raw.items():
        if section == "outputs":
            continue
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {path}")
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        for key, value in table.items():
            values[section][key] = (value, f"{section}.{key} in {path}")
    for variable, (section, key) in ENVIRONMENT.items():
        if environ.get(variable, "") != "":
            values[section][key] = (environ[variable], f"{section}.{key} (from {variable})")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        values[section][key] = (value, f"{section}.{key} (from the command line)")

    sections = {name: _build_section(name, cls, values[name]) for name, cls in SECTIONS.items()}
    outputs = _build_outputs(raw.get("outputs"), path) if "outputs" in raw else DEFAULT_OUTPUTS
    return Settings(outputs=outputs, **sections)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _build_section(name: str, cls: type, given: dict[str, tuple[Any, str]]):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, (value, where) in given.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {where}")
        annotation = fields[key].type  # a string, as this module postpones its annotations
        type_name = annotation if isinstance(annotation, str) else annotation.__name__
        kwargs[key] = _coerce(f"{name}.{key}", type_name, value, where)
    return cls(**kwargs)


def _coerce(dotted: str, type_name: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {value!r}")

    if dotted == "server.trusted_proxies":
        return _networks(value, where)
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise bad("true or false")
    if type_name == "int":
        if isinstance(value, bool):
            raise bad("a whole number")
        try:
            number = int(value) if not isinstance(value, float) else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise bad("a whole number")
        _check_range(dotted, number, where, value)
        return number
    if type_name == "float":
        if isinstance(value, bool):
            raise bad("a number")
        try:
            real = float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
        if not math.isfinite(real):
            raise bad("a finite number")
        _check_range(dotted, real, where, value)
        return real
    if type_name == "Path":
        if not isinstance(value, (str, Path)) or str(value) == "":
            raise bad("a directory path")
        return Path(value).expanduser()
    # str and "str | None"
    if not isinstance(value, str):
        raise bad("a string")
    if dotted in CHOICES and value not in CHOICES[dotted]:
        raise bad("one of " + ", ".join(CHOICES[dotted]))
    if dotted == "auth.token" and len(value) < 16:
        raise ConfigError(f"{where}: the token must be at least 16 characters long")
    return value


def _networks(value: Any, where: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """A list of IP addresses or CIDR networks (from the environment: one string, comma-separated)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of IP addresses or networks, got {value!r}")
    networks = []
    for item in items:
        try:
            # strict=False: "192.168.1.7/24" means that address's network, as in most proxies' own settings.
            networks.append(ip_network(item.strip(), strict=False))
        except (AttributeError, TypeError, ValueError):
            raise ConfigError(f"{where}: expected IP addresses or networks such as \"127.0.0.1\" or "
                              f"\"10.0.0.0/8\", got {item!r}") from None
    return tuple(networks)


def _check_range(dotted: str, number: float, where: str, raw: Any) -> None:
    if dotted in POSITIVE and number <= 0:
        raise ConfigError(f"{where}: expected a number above 0, got {raw!r}")
    if number < 0:
        raise ConfigError(f"{where}: expected a number of 0 or more, got {raw!r}")
    if dotted == "server.port" and number > 65535:
        raise ConfigError(f"{where}: expected a port from 1 to 65535, got {raw!r}")
    if dotted == "processing.webp_method" and number > 6:
        raise ConfigError(f"{where}: expected a WebP method from 0 to 6, got {raw!r}")
    if dotted == "processing.avif_speed" and number > 10:
        raise ConfigError(f"{where}: expected an AVIF speed from 0 to 10, got {raw!r}")
    if dotted == "processing.quality" and number > 100:
        raise ConfigError(f"{where}: expected a quality from 1 to 100, got {raw!r}")


def _build_outputs(raw: Any, path: Path | None) -> tuple[Output, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"outputs in {path}: expected a non-empty array of [[outputs]] tables")
    outputs = []
    for index, table in enumerate(raw):
        where = f"outputs[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} in {path}: expected a table")
        unknown = set(table) - {"name", "kind", "width", "height", "format"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]} in {path}: unknown setting")
        name = table.get("name")
        if not isinstance(name, str) or not name or name == "original" or not all(
            c.isalnum() or c in "-_" for c in name
        ):
            raise ConfigError(f"{where}.name in {path}: expected letters, digits, '-' or '_' (and not 'original'), "
                              f"got {name!r}")
        kind = table.get("kind")
        if kind not in OUTPUT_KINDS:
            raise ConfigError(f"{where}.kind in {path}: expected one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")
        fmt = table.get("format", "webp")
        if fmt not in OUTPUT_FORMATS:
            raise ConfigError(f"{where}.format in {path}: expected one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
        if fmt == "avif" and importlib.util.find_spec("PIL._avif") is None:
            raise ConfigError(f"{where}.format in {path}: this Pillow was built without AVIF support, use webp")
        size = {}
        for key in ("width", "height"):
            value = table.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 20000:
                raise ConfigError(f"{where}.{key} in {path}: expected a whole number from 1 to 20000, got {value!r}")
            size[key] = value
        outputs.append(Output(name, kind, size["width"], size["height"], fmt))
    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"outputs in {path}: output names must be unique")
    for kind in OUTPUT_KINDS:
        if not any(o.kind == kind for o in outputs):
            raise ConfigError(f"outputs in {path}: at least one output of kind {kind!r} is needed")
    return tuple(outputs)
