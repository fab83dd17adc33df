"""The one settings object. Read from configs/default.toml, then MIMICSAFE_* environment variables.

Nothing else in the project reads os.environ: code receives a `Settings` instance.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = REPO_ROOT / "configs" / "default.toml"

_DEV_SECRET = "development-only-secret-change-me"


class SettingsError(ValueError):
    """Settings failed validation; the message names each offending setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MIMICSAFE_",
        toml_file=DEFAULT_CONFIG_FILE,
        extra="forbid",
        validate_default=True,
    )

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses development defaults such as the secret key."
    )
    home: Path = Field(Path("./mimicsafe-data"),
                       description="Directory for the SQLite database, blobs, keys and models.")
    database_url: str | None = Field(  # repr=False here and below: the URL may hold a password
        None, repr=False,
        description="SQLAlchemy URL. Default: SQLite file `mimicsafe.db` under home. PostgreSQL at scale.",
    )
    queue_url: str | None = Field(
        None, repr=False, description="Huey storage: `redis://…` at scale. Default: SQLite file `queue.db` under home."
    )
    base_model: str | None = Field(
        None, description="Local diffusers folder or single-file checkpoint. Default: the built-in tiny demo model."
    )
    base_model_kind: Literal["sd15", "sdxl"] = Field(
        "sd15", description="Architecture of `base_model` when it is a single file (selects configs/models/KIND)."
    )
    base_model_tokenizer: Path | None = Field(
        None, description="Local tokenizer folder for a single-file base model (e.g. a diffusers folder of that kind)."
    )
    host: str = Field("127.0.0.1", description="Address `mimicsafe serve` listens on.")
    port: int = Field(7860, ge=1, le=65535, description="Port `mimicsafe serve` listens on.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging level.")
    secret_key: SecretStr = Field(
        SecretStr(_DEV_SECRET),
        description="Keys the login form's CSRF tokens and the digests in logs and login counts. Must be set in "
                    "production."
    )
    admin_password: SecretStr | None = Field(
        None,
        description="Password for the first admin. If unset, a random one is written to home/initial-admin-password.",
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest upload in bytes.")
    max_upload_pixels: int = Field(40_000_000, gt=0, description="Largest upload in pixels, checked before decoding.")
    pdq_threshold: int = Field(31, ge=0, le=64, description="PDQ Hamming distance at or below which two images match.")
    pdq_min_quality: int = Field(50, ge=0, le=100, description="PDQ quality below which an image is `low_detail`.")
    robust_min_inliers: int = Field(
        8, ge=4, le=200, description="Local-feature match: RANSAC inliers of the similarity transform needed."
    )
    robust_min_coverage: float = Field(
        0.6, gt=0, le=1, description="Local-feature match: share of detailed cells that must agree after alignment."
    )
    robust_min_area: float = Field(
        0.05, ge=0, le=1, description="Local-feature match: share of the registered work the matched region must span."
    )
    robust_max_nfa: float = Field(
        1e-3, gt=0,
        description="Local-feature match: expected number of chance matches per upload, over the whole registry, "
                    "that a match may reach (a-contrario test; `inf` turns it off, leaving the fixed thresholds).",
    )
    robust_cell_chance: float = Field(
        0.35, gt=0, lt=1,
        description="Local-feature match: probability that a detailed cell agrees under a wrong alignment "
                    "(the a-contrario test's background, measured on unrelated flat art).",
    )
    robust_vote_descriptors: int = Field(
        250, ge=50, le=500,
        description="Local-feature look-up: query descriptors that vote for candidates (fewer: faster, fewer catches).",
    )
    index_rebuild_changes: int = Field(
        1000, ge=1,
        description="The worker rebuilds the index build once this many registry changes were logged after it.",
    )
    index_rebuild_minutes: int = Field(
        60, ge=0,
        description="The worker also rebuilds a build this many minutes old if anything changed since (0: never).",
    )
    login_attempts_per_minute: int = Field(
        10, gt=0, description="Failed logins allowed per account name and client address in any minute (a client "
                              "elsewhere guessing cannot lock the owner out).")
    login_attempts_per_account_per_hour: int = Field(
        1000, gt=0,
        description="Failed logins allowed per account name in any hour from all clients together: stops guessing "
                    "spread over many addresses. Keep it above 60 x `login_attempts_per_minute`, so that one client "
                    "alone cannot lock an account.")
    login_limit_storage: str | None = Field(
        None, repr=False,
        description="Where failed-login counts are kept (a `limits` storage URI such as `redis://host:6379/1`). "
                    "Default: the queue's Redis when `queue_url` is `redis://…`, shared by every server; else "
                    "`memory://`, the one `mimicsafe serve` process.")
    uploads_per_hour: int = Field(
        200, gt=0,
        description="Files one account may upload per hour, rejected ones included (counted in the database: "
                    "shared by every server, the CLI and the API).",
    )
    public_max_pixels: int = Field(
        16_000_000, gt=0,
        description="Largest image in pixels the public page's check decodes (anonymous work; checked before "
                    "decoding).",
    )
    public_checks_per_minute: int = Field(
        10, gt=0, description="Image checks one client address may run on the public page per minute.")
    public_uploads_per_hour: int = Field(
        120, gt=0, description="Files one visitor (or client address) may upload to the public page per hour.")
    public_concurrency: int = Field(
        2, gt=0, description="Public image checks running at once; more wait in the queue.")
    public_queue_size: int = Field(
        16, gt=0, description="Public image checks waiting at most; more are refused (503) until one is done.")
    heavy_concurrency: int = Field(
        2, gt=0,
        description="Heavy logged-in handlers (uploads, portfolio, generation, opt-out, review previews) "
                    "running at once, together; more wait in the queue.",
    )
    trusted_proxies: str = Field(
        "127.0.0.1,::1",
        description="Proxies (IPs or networks, comma-separated; `*` any; empty none) whose X-Forwarded-Proto and "
                    "X-Forwarded-For the web server believes: behind a TLS proxy they make session cookies Secure.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then the environment, then configs/default.toml.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("database_url", "queue_url", "base_model", "base_model_tokenizer", "login_limit_storage",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("queue_url")
    @classmethod
    def _queue_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "sqlite:///")):
            raise ValueError("must start with redis://, rediss:// or sqlite:///")
        return value

    @field_validator("login_limit_storage")
    @classmethod
    def _limit_storage_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("memory://", "redis://", "rediss://", "redis+sentinel://")):
            raise ValueError("must start with memory://, redis://, rediss:// or redis+sentinel://")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item and item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") \
                        from None
        return value

    @property
    def trusted_proxy_list(self) -> list[str]:
        """`trusted_proxies` as uvicorn's `forwarded_allow_ips` takes it: empty when none is trusted."""
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @model_validator(mode="after")
    def _no_dev_secret_in_production(self) -> Settings:
        if self.environment == "production" and self.secret_key.get_secret_value() == _DEV_SECRET:
            raise ValueError("secret_key: set MIMICSAFE_SECRET_KEY to a long random value in production")
        return self

    # Derived paths -----------------------------------------------------------------------------
    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def blob_dir(self) -> Path:
        return self.home_dir / "blobs"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'mimicsafe.db'}"

    @property
    def huey_url(self) -> str:
        return self.queue_url or f"sqlite:///{self.home_dir / 'queue.db'}"

    @property
    def login_limit_url(self) -> str:
        """Failed-login counts: where every server sees them (the queue's Redis), else this process."""
        if self.login_limit_storage:
            return self.login_limit_storage
        if self.queue_url and self.queue_url.startswith(("redis://", "rediss://")):
            return self.queue_url
        return "memory://"

    @property
    def uses_demo_model(self) -> bool:
        return self.base_model is None


def load_settings(**overrides: object) -> Settings:
    """Build and validate the settings, turning pydantic's report into one readable `SettingsError`."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name} (MIMICSAFE_{name.upper()}): {message}" if name else message)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
