"""Strict configuration: pydantic models, safe YAML loading, JSON schema export."""

from feedtag.config.loading import config_json_schema, load_config, parse_config, validate_config
from feedtag.config.models import (
    CameraConfig,
    EngineConfig,
    FeedtagConfig,
    ReconnectConfig,
)

__all__ = [
    "CameraConfig",
    "EngineConfig",
    "FeedtagConfig",
    "ReconnectConfig",
    "config_json_schema",
    "load_config",
    "parse_config",
    "validate_config",
]
