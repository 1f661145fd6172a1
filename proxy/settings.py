"""Configuration: one typed object built once (env `HUBGATE_*`, optional TOML file) and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config/hubgate.toml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUBGATE_", extra="forbid", frozen=True)

    host: str = "0.0.0.0"
    port: int = 8080
    data_dir: Path = Path("./data")
    redis_url: str | None = None  # unset: start the embedded redis-server
    redis_prefix: str = "hubgate:"
    hf_upstream: str = "https://huggingface.co"
    torch_upstream: str = "https://download.pytorch.org"
    github_upstream: str = "https://github.com"
    github_api_upstream: str = "https://api.github.com"
    hf_token: SecretStr | None = None
    admin_token: SecretStr | None = None
    policy: Path = Path("config/policy.toml")
    offline: bool = False
    hold_seconds: float = 7.0  # below huggingface_hub's 10 s HEAD timeout
    revision_ttl: int = 300  # seconds a branch/tag resolution is trusted
    scan_timeout: float = 600.0
    scan_memory_mb: int = 4096
    scan_workers: int = 2
    max_file_size: int = 60 * 1024**3
    max_concurrent_fetches: int = 8  # upstream downloads at once; more requests queue (429 "queued")
    min_free_disk_mb: int = 1024  # a download that would leave less free space in data_dir is refused (503)
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 60.0
    webhooks: list[str] = Field(default_factory=list)
    policy_watch_seconds: float = 5.0  # how often the policy file's mtime is checked (0: never; SIGHUP still works)
    vet_concurrency: int = 4  # files vetted at once by one prefetch job
    log_json: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("HUBGATE_CONFIG", DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs" / "sha256"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to print: secrets masked."""
        return self.model_dump(mode="json") | {
            "hf_token": "***" if self.hf_token else None,
            "admin_token": "***" if self.admin_token else None,
        }
