"""Configuration: one TOML file plus ``UNICOMM_*`` environment variables.

Precedence (highest first): explicit overrides, environment, the TOML file,
documented defaults. Relative paths are resolved once, against the directory of
the configuration file (or ``UNICOMM_HOME`` when there is no file), so nothing
else in the code ever depends on the current working directory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "UNICOMM_"
CONFIG_ENV = "UNICOMM_CONFIG"
HOME_ENV = "UNICOMM_HOME"


class ConfigError(Exception):
    """A configuration file or value that cannot be used; the message names the key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    data_dir: Path = Field(Path("var"), description="Where the server keeps its files.")
    http_host: str = Field("0.0.0.0", description="Address the HTTP server listens on.")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port (console, API, /sip).")
    sip_host: str = Field("0.0.0.0", description="Address the SIP transports listen on.")
    sip_port: int = Field(5060, ge=0, le=65535, description="SIP UDP/TCP port.")
    sip_tls_port: int = Field(5061, ge=0, le=65535, description="SIP over TLS port.")
    sip_realm: str = Field("unicomm", min_length=1, description="SIP digest realm and domain.")
    # SIP server (voip/): transports, registrar limits, call timers, protection.
    sip_advertised_host: str = Field(
        "", description="Host or IP put in Via/Contact; empty: sip_host, or this machine's IP."
    )
    sip_tls_cert: str = Field("", description="PEM certificate for SIP TLS; empty: self-signed.")
    sip_tls_key: str = Field("", description="PEM private key for sip_tls_cert.")
    sip_min_expires: int = Field(60, ge=1, description="Shortest registration accepted (423).")
    sip_max_expires: int = Field(3600, ge=1, description="Longest registration granted.")
    sip_default_expires: int = Field(3600, ge=1, description="Registration when none asked.")
    sip_ring_timeout: float = Field(60.0, gt=0, description="Seconds a call rings unanswered.")
    sip_t1_ms: int = Field(
        500, ge=50, description="SIP timer T1 (RFC 3261 round-trip estimate), ms; lower on a LAN."
    )
    sip_t2_ms: int = Field(
        4000, ge=50, description="SIP timer T2 (longest retransmission interval), ms; >= T1."
    )
    sip_t4_ms: int = Field(
        5000, ge=1, description="SIP timer T4 (longest a message stays in the network), ms."
    )
    sip_trusted_networks: list[str] = Field(
        default_factory=list, description="CIDRs exempt from limits and bans (trunks, workers)."
    )
    sip_rate_limit: int = Field(
        300, ge=1, description="Requests per second from one source before it is dropped."
    )
    sip_ban_threshold: int = Field(
        10, ge=1, description="Digest failures (after a challenge) from one source before a ban."
    )
    sip_ban_seconds: float = Field(600.0, gt=0, description="How long a ban lasts.")
    sip_scan_threshold: int = Field(
        30, ge=1, description="Distinct unknown-credential users one source may try before a ban."
    )
    # PBX features (voip/): media workers, the carrier trunk, rating.
    voip_media_workers: int = Field(
        2, ge=0, le=32, description="pjsua2 media worker processes (4 calls each); 0: none."
    )
    voip_media_host: str = Field(
        "127.0.1.1", description="Loopback address the media workers bind (trusted, own source)."
    )
    voip_media_sip_port: int = Field(
        0, ge=0, le=65535, description="SIP port of the first media worker; 0: any free ports."
    )
    voip_media_rtp_port: int = Field(
        0, ge=0, le=65535, description="First RTP port of the media workers; 0: any free block."
    )
    voip_moh_file: str = Field(
        "", description="Music on hold (any format ffmpeg reads); empty: the built-in tune."
    )
    voip_recording_days: int = Field(
        90, ge=1, le=3650, description="Days call recordings are kept before they are deleted."
    )
    voip_trunk_host: str = Field("", description="Carrier SIP trunk host; empty: no trunk.")
    voip_trunk_port: int = Field(5060, ge=1, le=65535, description="Carrier SIP trunk UDP port.")
    voip_trunk_domain: str = Field("", description="Carrier SIP domain; empty: voip_trunk_host.")
    voip_trunk_username: str = Field("", description="Trunk account (digest user).")
    voip_trunk_password: str = Field("", description="Trunk account password.")
    voip_trunk_register: bool = Field(True, description="Register the trunk account.")
    voip_trunk_expires: int = Field(300, ge=60, description="Trunk registration lifetime.")
    voip_trunk_public_host: str = Field(
        "", description="Our address as the carrier sees it (SIP and RTP); empty: advertised host."
    )
    voip_bulk_discount_percent: float = Field(
        15.0, ge=0, lt=100, description="Carrier bulk discount off the retail tariff, percent."
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///var/unicomm.db",
        description="SQLAlchemy URL: SQLite (aiosqlite) or PostgreSQL (asyncpg).",
    )
    redis_url: str = Field("", description="Redis URL; empty means the in-process bus.")
    redis_namespace: str = Field(
        "unicomm", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of keys and channels in Redis."
    )
    secret_key: str = Field("", description="Signing secret; generated under data_dir if empty.")
    log_level: str = Field("INFO", description="Logging level.")
    log_format: str = Field("console", description="'console' or 'json'.")
    session_hours: float = Field(12.0, gt=0, description="Console session lifetime.")
    login_max_failures: int = Field(5, ge=1, description="Failures before a login is locked.")
    login_lockout_minutes: float = Field(15.0, gt=0, description="How long a lockout lasts.")
    cookie_secure: bool = Field(False, description="Mark cookies Secure (behind HTTPS).")
    node_name: str = Field("", description="Name of this node in a cluster; hostname if empty.")
    timezone: str = Field(
        "Asia/Shanghai",
        description="IANA time zone of the city: report months, capture windows, kiosk"
        " schedules, times shown.",
    )
    # SMS alerts (sms/): provider, callbacks and the delivery engine's limits.
    sms_provider: str = Field(
        "console",
        pattern=r"^(console|twilio)$",
        description="'console' (writes a log file) or 'twilio'.",
    )
    twilio_account_sid: str = Field("", description="Twilio account SID (AC...).")
    twilio_auth_token: str = Field("", description="Twilio auth token; also signs callbacks.")
    twilio_from: str = Field("", description="Sender: an E.164 number or a Messaging Service SID.")
    twilio_api_base: str = Field("", description="Twilio-compatible API base URL; empty: Twilio's.")
    public_url: str = Field("", description="Base URL the provider calls back; empty: this server.")
    sms_rate_per_second: float = Field(0.0, ge=0, description="Global send rate; 0: unlimited.")
    sms_sender_rate_per_second: float = Field(0.0, ge=0, description="Per sender; 0: unlimited.")
    sms_max_in_flight: int = Field(64, ge=1, description="Provider requests in flight per node.")
    sms_max_attempts: int = Field(5, ge=1, description="Attempts on temporary provider errors.")
    sms_retry_base_seconds: float = Field(2.0, gt=0, description="First retry delay (doubles).")
    sms_in_doubt_seconds: float = Field(30.0, gt=0, description="When a send is reconciled.")
    sms_status_poll_seconds: float = Field(300.0, gt=0, description="Fetch status if no callback.")
    sms_approval_threshold: int = Field(
        200, ge=0, description="Recipients above which a second officer approves; 0: never."
    )
    sms_segment_price: float = Field(0.05, ge=0, description="Estimated cost of one segment.")
    sms_call_retries: int = Field(
        2, ge=0, description="Escalation calls again after one that rang unanswered or busy."
    )
    sms_call_retry_minutes: float = Field(
        5.0, gt=0, description="Minutes between an unanswered escalation call and the next."
    )

    # News on demand (vod/): transcoding, uploads, watch folder, retention, serving.
    vod_max_jobs: int = Field(1, ge=1, description="Transcode jobs run at once on this node.")
    vod_retention_days: int = Field(30, ge=1, description="Days an item stays after broadcast.")
    vod_max_upload_mb: int = Field(4096, ge=1, description="Largest upload accepted, in MB.")
    vod_disk_watermark_percent: float = Field(
        10.0, ge=0, lt=100, description="Free disk below this percent purges oldest items first."
    )
    vod_watch_dir: str = Field("", description="Folder polled for new media files; empty: off.")
    vod_ladder: list[int] = Field(
        default_factory=lambda: [720, 480, 240], description="Video rendition heights (HLS ladder)."
    )
    vod_segment_seconds: int = Field(6, ge=1, le=30, description="HLS segment length (= GOP).")
    vod_x264_preset: str = Field("veryfast", description="libx264 preset of the transcoder.")
    vod_url_minutes: int = Field(240, ge=1, description="Lifetime of signed (kiosk) media URLs.")

    # Video conference (conference/, signaling/): the forwarding SFU and its rooms.
    conference_command_room: str = Field(
        "command", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The always-open command room."
    )
    conference_last_n: int = Field(
        4, ge=0, le=16, description="Active speakers each venue sees besides the main venue."
    )
    conference_video_codec: str = Field(
        "vp8", pattern=r"^(vp8|h264)$", description="Codec every publisher sends (forwarded as is)."
    )
    conference_peer_timeout: float = Field(
        10.0, gt=0, description="Seconds without signalling heartbeat before a venue is removed."
    )
    conference_keyframe_interval: float = Field(
        0.5, gt=0, description="Least seconds between keyframe requests forwarded to a publisher."
    )
    conference_queue_frames: int = Field(
        32, ge=2, description="Encoded frames queued per subscriber before it skips to a keyframe."
    )
    conference_ice_loopback: bool = Field(
        False, description="Offer 127.0.0.1 as an ICE host candidate (loopback-only tests)."
    )

    # Street kiosks (kiosk/): their own public listener, uploads, heartbeats, pairing.
    kiosk_http_host: str = Field("0.0.0.0", description="Address of the kiosk-only listener.")
    kiosk_http_port: int = Field(
        0, ge=0, le=65535, description="Port of the kiosk-only listener; 0: no separate listener."
    )
    kiosk_max_upload_mb: int = Field(200, ge=1, description="Largest kiosk image or clip, in MB.")
    kiosk_heartbeat_seconds: float = Field(30.0, gt=0, description="Kiosk heartbeat interval.")
    kiosk_stale_seconds: float = Field(
        120.0, gt=0, description="A kiosk that has not rendered for this long is stale."
    )
    kiosk_pairing_minutes: float = Field(15.0, gt=0, description="Lifetime of a pairing code.")

    config_file: Path | None = Field(None, exclude=True)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"console", "json"}:
            raise ValueError("must be 'console' or 'json'")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("sip_t2_ms")
    @classmethod
    def _t2_not_below_t1(cls, value: int, info: ValidationInfo) -> int:
        t1 = info.data.get("sip_t1_ms")
        if t1 is not None and value < t1:
            raise ValueError(f"must be at least sip_t1_ms ({t1})")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.removeprefix("sqlite:///")
        if not (
            value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")
        ):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    # Derived paths: everything else asks these, never the working directory.
    def path(self, *parts: str) -> Path:
        return self.data_dir.joinpath(*parts)

    @property
    def zone(self) -> ZoneInfo:
        """The city's time zone (``timezone``): report months, schedules, times shown to people."""
        return ZoneInfo(self.timezone)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc
    unicomm = data.get("unicomm", data)
    if not isinstance(unicomm, dict):
        raise ConfigError(f"configuration file {path}: [unicomm] must be a table")
    return unicomm


def _explain(exc: ValidationError, source: str) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "?"
    if first["type"] == "extra_forbidden":
        return ConfigError(f"{source}: unknown key '{key}'")
    return ConfigError(f"{source}: invalid value for '{key}': {first['msg']}")


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise :class:`ConfigError` naming the offending key."""
    file_values: dict[str, Any] = {}
    path_text = config_file or os.environ.get(CONFIG_ENV)
    base_dir: Path
    source = "environment"
    resolved_file: Path | None = None
    if path_text:
        resolved_file = Path(path_text).expanduser().resolve()
        file_values = _read_toml(resolved_file)
        base_dir = resolved_file.parent
        source = str(resolved_file)
    else:
        base_dir = Path(os.environ.get(HOME_ENV) or Path.cwd()).expanduser().resolve()

    env_keys = {name for name in os.environ if name.startswith(ENV_PREFIX)}
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    known |= {CONFIG_ENV, HOME_ENV}
    for name in sorted(env_keys - known):
        raise ConfigError(f"environment: unknown key '{name}'")

    unknown = set(file_values) - set(Settings.model_fields) | ({"config_file"} & set(file_values))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{sorted(unknown)[0]}'")

    # Environment must win over the file, so the file's values only fill what
    # the environment leaves unset.
    init_values = {
        key: value
        for key, value in file_values.items()
        if f"{ENV_PREFIX}{key.upper()}" not in os.environ
    }
    init_values.update(overrides)
    try:
        settings = Settings(**init_values)
    except ValidationError as exc:
        failing = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
        origin = "environment" if f"{ENV_PREFIX}{failing.upper()}" in os.environ else source
        raise _explain(exc, origin) from None

    data_dir = settings.data_dir.expanduser()
    if not data_dir.is_absolute():
        data_dir = (base_dir / data_dir).resolve()
    settings.data_dir = data_dir
    settings.config_file = resolved_file
    if "database_url" not in settings.model_fields_set:
        # The default SQLite file lives in data_dir, wherever data_dir is moved.
        settings.database_url = f"sqlite+aiosqlite:///{data_dir / 'unicomm.db'}"
    elif settings.database_url.startswith("sqlite+aiosqlite:///"):
        db_path = Path(settings.database_url.removeprefix("sqlite+aiosqlite:///"))
        if not db_path.is_absolute():
            settings.database_url = f"sqlite+aiosqlite:///{(base_dir / db_path).resolve()}"
    return settings
