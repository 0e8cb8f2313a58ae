"""The one base exception of threattune and its family.

Every error that threattune raises on purpose is a :class:`ThreatTuneError`. Each one can say
where the problem is (a file, a line, a field), what was expected, what was found and how to fix
it, so that a detection engineer reading a failed job knows what to change without a debugger.

    ThreatTuneError
    ├── DataError            input data that cannot be read or does not fit
    │   └── SchemaMismatch   input that does not match a model's stored fingerprint
    ├── ConfigError          a task file, setting or command-line value that is wrong
    ├── DatasetError         a catalogued dataset that is missing or fails its checksum
    ├── ModelError           a model bundle or registry entry that cannot be loaded
    └── TrackingError        MLflow could not record or find a run or model version
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetError",
    "ModelError",
    "SchemaMismatch",
    "ThreatTuneError",
    "TrackingError",
]


class ThreatTuneError(Exception):
    """Base of every error threattune raises on purpose.

    Parameters
    ----------
    message:
        What went wrong, in one sentence.
    path, line, field:
        Where it went wrong: a file, a 1-based line number in it, a column or setting name.
    expected, found:
        What threattune expected there and what it found instead.
    fix:
        What the user can do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        found: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(self.__str__())

    @property
    def location(self) -> str:
        """``file:line`` and the field, as far as they are known."""
        where = self.path or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        if self.field is not None:
            where = f"{where}: field '{self.field}'" if where else f"field '{self.field}'"
        return where

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.expected is not None:
            text += f"\n  expected: {self.expected}"
        if self.found is not None:
            text += f"\n  found:    {self.found}"
        if self.fix is not None:
            text += f"\n  fix:      {self.fix}"
        return text


class DataError(ThreatTuneError):
    """Input data that cannot be read or does not fit what the job needs."""


class SchemaMismatch(DataError):
    """Input whose columns, types or values do not match a model's stored fingerprint."""


class ConfigError(ThreatTuneError):
    """A task file, setting or command-line value that is wrong."""


class DatasetError(ThreatTuneError):
    """A catalogued dataset that is missing, incomplete or fails its checksum."""


class ModelError(ThreatTuneError):
    """A model bundle or registry entry that cannot be loaded or used."""


class TrackingError(ThreatTuneError):
    """MLflow could not record or find a run, a model version or an alias."""
