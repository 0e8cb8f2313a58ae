"""The service's settings: which models, which store, which limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from threattune.errors import ConfigError

__all__ = ["MB", "Limits", "ServiceSettings"]

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one request may carry; larger requests are refused with 413 before any scoring."""

    max_body_bytes: int = 16 * MB
    max_flows: int = 10_000
    max_emails: int = 500

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_flows", "max_emails"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    "a request limit must be a whole number above 0",
                    field=name,
                    expected="an int >= 1",
                    found=repr(value),
                )


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``threattune serve`` is started with.

    ``models`` are references as the command line takes them: ``models:/NAME@ALIAS`` (followed:
    when the alias moves, the service loads the new version and switches), ``models:/NAME/N``
    or a model folder (loaded once). ``reload_seconds`` is how often aliases are checked.
    ``scoring_threads`` is how many threads one flow prediction may use; requests already run
    side by side, so 1 is usually fastest. ``cascades`` are folders written by ``threattune
    cascade train``: each filters the alerts of the served model version it was trained on
    (two-stage scoring), and lies idle while another version is served.
    """

    models: tuple[str, ...] = ()
    cascades: tuple[str, ...] = ()
    store: str = "sqlite:///service.db"
    reload_seconds: float = 30.0
    scoring_threads: int = 1
    limits: Limits = field(default_factory=Limits)
    public_metrics: bool = False
    secure_cookies: bool = False
    session_hours: float = 12.0
    link_seconds: float = 120.0
    dashboard_hours: int = 48

    def __post_init__(self) -> None:
        if not self.reload_seconds > 0:
            raise ConfigError(
                "the alias check interval must be positive",
                field="--reload-seconds",
                expected="seconds > 0, e.g. 30",
                found=repr(self.reload_seconds),
            )
        for folder in self.cascades:
            if not any((Path(folder) / sub / "cascade.json").is_file() for sub in (".", "cascade")):
                raise ConfigError(
                    "not a threattune cascade folder", path=folder, field="--cascade",
                    expected="a folder written by 'threattune cascade train --output X' "
                    "(X or X/cascade)",
                    fix="train one with 'threattune cascade train', or leave --cascade out",
                )  # fmt: skip
        if len(set(self.models)) != len(self.models):
            raise ConfigError(
                "a model is given twice",
                field="--model",
                expected="each model reference once",
                found=", ".join(self.models),
            )
