"""Configuration: frozen dataclasses are the schema (:mod:`.schema`), TOML is the format.

:mod:`.load` reads and validates a file (:mod:`.compat` also takes skynetsoap's
keys and ``overrides=``; its ``load_config`` is the one exported here),
:mod:`.secrets` reads the Skynet token,
:mod:`.example` writes ``config/soapd.example.toml`` from the schema. The public
names are re-exported here, so ``from soapd.config import Config, load_config``
is the one spelling callers use.
"""

from soapd.config.compat import DebugConfig, SOAPConfig, load_config
from soapd.config.load import parse_config
from soapd.config.schema import (
    AlertsConfig,
    CalibrationConfig,
    CircularConfig,
    Config,
    ExtractionConfig,
    FrameConfig,
    LimitsConfig,
    LoggingConfig,
    NotifierConfig,
    PathsConfig,
    PhotometryConfig,
    RetentionConfig,
    ServiceConfig,
    SkynetConfig,
    StacksConfig,
    TargetConfig,
    WebConfig,
    to_dict,
)
from soapd.config.secrets import Token, read_token, read_web_token

__all__ = [
    "AlertsConfig",
    "CalibrationConfig",
    "CircularConfig",
    "Config",
    "DebugConfig",
    "ExtractionConfig",
    "FrameConfig",
    "LimitsConfig",
    "LoggingConfig",
    "NotifierConfig",
    "PathsConfig",
    "PhotometryConfig",
    "RetentionConfig",
    "SOAPConfig",
    "ServiceConfig",
    "SkynetConfig",
    "StacksConfig",
    "TargetConfig",
    "Token",
    "WebConfig",
    "load_config",
    "parse_config",
    "read_token",
    "read_web_token",
    "to_dict",
]
