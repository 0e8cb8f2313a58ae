"""The models the service scores with, and how it follows their registry aliases.

Each configured reference is a :class:`ServedModel`. A background thread checks every alias
(``models:/NAME@ALIAS``) on a short interval; when the alias points at another version, the
thread loads that version by its number (so the version served is the version recorded) and
then swaps it in with one assignment. Requests read the current model once and use that
object to the end, so a request never mixes two versions. A version that fails to load leaves
the previous one serving; the failure is kept for readiness and metrics, and that version is
tried again only after a back-off or when the alias moves on.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threattune.errors import ModelError

logger = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelSet", "ServedModel", "model_kind"]

_ALIAS_URI = re.compile(r"^models:/([^/@]+)@([^/@]+)$")
_VERSION_URI = re.compile(r"^models:/([^/@]+)/(\d+)$")
FLOW = "flow"
MAIL = "mail"


def model_kind(model: Any) -> str:
    """``flow`` for a flow model, ``mail`` for a model that scores parsed messages."""
    from threattune.flow_model import FlowModel

    if isinstance(model, FlowModel):
        return FLOW
    if callable(getattr(model, "score_messages", None)):
        return MAIL
    raise ModelError(
        "the model is neither a flow model nor a mail model",
        expected="a folder written by 'threattune train' (flows or phishing)",
        found=type(model).__name__,
    )


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version, immutable once built."""

    name: str
    version: str
    kind: str
    model: Any
    reference: str
    loaded_at: datetime

    @property
    def model_version(self) -> str:
        """``NAME/VERSION``, as verdicts and alerts record it."""
        return f"{self.name}/{self.version}"

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(getattr(self.model, "manifest", {}) or {})

    @property
    def operating_point(self) -> dict[str, Any] | None:
        """The alert threshold and what it was chosen for, or None (most probable class)."""
        point = self.manifest.get("operating_point")
        return dict(point) if isinstance(point, dict) else None

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in getattr(self.model, "classes", []) or []]


Loader = Callable[[str], Any]
Listener = Callable[["ServedModel", LoadedModel], None]


def _open_model(reference: str) -> Any:
    from threattune import tracking

    return tracking.open_model(reference, with_baseline=False)


def limit_threads(model: Any, threads: int) -> None:
    """Let one prediction of a flow model use at most ``threads`` threads.

    The service runs requests side by side in a thread pool, so each prediction on one thread
    avoids the thread start-up and oversubscription that dominate small batches.
    """
    from threattune.flow_model import FlowModel

    if isinstance(model, FlowModel) and threads > 0:
        model.trees.booster.set_param({"nthread": threads})


class ServedModel:
    """One configured model reference, its current version and its reload state."""

    def __init__(
        self,
        reference: str,
        *,
        loader: Loader = _open_model,
        retry_seconds: float = 300.0,
        threads: int = 1,
    ) -> None:
        self.reference = reference
        self._loader = loader
        self.retry_seconds = retry_seconds
        self.threads = threads
        alias, pinned = _ALIAS_URI.match(reference), _VERSION_URI.match(reference)
        self.alias: str | None = alias.group(2) if alias else None
        self.pinned: str | None = pinned.group(2) if pinned else None
        registry = alias or pinned
        self.registered: str | None = registry.group(1) if registry else None
        self.name = self.registered or _folder_name(reference)
        self.current: LoadedModel | None = None
        self.target: str | None = None
        self.last_check: datetime | None = None
        self.last_error: dict[str, Any] | None = None
        self.failures = 0
        self.registry_versions: list[dict[str, Any]] = []
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def kind(self) -> str | None:
        return None if self.current is None else self.current.kind

    @property
    def failing(self) -> bool:
        """Whether the last load attempt failed (the previous version, if any, still serves)."""
        return self.last_error is not None

    def refresh(self) -> LoadedModel | None:
        """Check the alias and load a new version if it moved; the new model, else None.

        Never raises: a failure is recorded in ``last_error`` and the current model stays.
        """
        with self._lock:
            return self._refresh()

    def _refresh(self) -> LoadedModel | None:
        self.last_check = datetime.now(UTC)
        try:
            wanted = self._wanted_version()
        except Exception as error:  # noqa: BLE001 - the registry may be briefly unreachable
            self._failed(self.target or "?", error)
            return None
        self.target = wanted
        if self.current is not None and self.current.version == wanted:
            self.last_error = None
            return None
        failed_at = self._failed_at.get(wanted)
        if failed_at is not None and time.monotonic() - failed_at < self.retry_seconds:
            return None
        reference = self._reference_of(wanted)
        logger.info("loading %s (%s)", reference, self.reference)
        try:
            model = self._loader(reference)
            limit_threads(model, self.threads)
            loaded = LoadedModel(
                name=self.name,
                version=wanted,
                kind=model_kind(model),
                model=model,
                reference=reference,
                loaded_at=datetime.now(UTC),
            )
        except Exception as error:  # noqa: BLE001 - any load failure keeps the old model
            self._failed(wanted, error)
            self._failed_at[wanted] = time.monotonic()
            return None
        self._failed_at.pop(wanted, None)
        previous = self.current
        self.current = loaded
        self.last_error = None
        if previous is None:
            logger.info("serving %s", loaded.model_version)
        else:
            logger.warning("switched %s -> %s", previous.model_version, loaded.model_version)
        return loaded

    def refresh_versions(self) -> None:
        """Re-read the registered versions of this model (for the models endpoint)."""
        if self.registered is None:
            return
        from threattune import tracking

        try:
            self.registry_versions = tracking.list_versions(self.registered)
        except Exception as error:  # noqa: BLE001 - listing is informative only
            logger.info("cannot list versions of %s: %s", self.registered, error)

    def status(self) -> dict[str, Any]:
        """Where this model stands, JSON-ready."""
        current = self.current
        return {
            "name": self.name,
            "reference": self.reference,
            "alias": self.alias,
            "kind": self.kind,
            "version": None if current is None else current.version,
            "model_version": None if current is None else current.model_version,
            "loaded_at": None if current is None else current.loaded_at.isoformat(),
            "alias_version": self.target,
            "last_check": None if self.last_check is None else self.last_check.isoformat(),
            "reload_failing": self.failing,
            "reload_failures": self.failures,
            "last_error": self.last_error,
        }

    def _wanted_version(self) -> str:
        if self.pinned is not None:
            return self.pinned
        if self.alias is None:
            return "local"
        from threattune import tracking

        pointed = tracking.aliases(self.registered or "").get(self.alias)
        if pointed is None:
            raise ModelError(
                f"alias '{self.alias}' of '{self.registered}' points at no version",
                field="--model",
                found=self.reference,
                fix=f"threattune models alias {self.registered} {self.alias} VERSION",
            )
        return str(pointed)

    def _reference_of(self, version: str) -> str:
        if self.registered is not None:
            return f"models:/{self.registered}/{version}"
        return self.reference

    def _failed(self, version: str, error: Exception) -> None:
        self.failures += 1
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        self.last_error = {
            "version": version,
            "message": message[:500],
            "at": datetime.now(UTC).isoformat(),
        }
        serving = self.current.model_version if self.current else "nothing"
        logger.error("cannot load %s version %s (%s still serves): %s",
                     self.name, version, serving, message)  # fmt: skip


def _folder_name(reference: str) -> str:
    folder = Path(reference)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        import json

        try:
            task = json.loads(manifest.read_text(encoding="utf-8")).get("task")
        except (OSError, ValueError):
            task = None
        if task:
            from threattune.tracking import registered_model_name

            return registered_model_name(str(task))
    return folder.resolve().name or "model"


class ModelSet:
    """Every served model and the thread that keeps them current."""

    def __init__(
        self,
        references: tuple[str, ...] | list[str],
        *,
        reload_seconds: float = 30.0,
        threads: int = 1,
        loader: Loader = _open_model,
        on_loaded: Listener | None = None,
        on_checked: Callable[[ServedModel], None] | None = None,
    ) -> None:
        retry = max(60.0, 10 * reload_seconds)
        self.models = [
            ServedModel(r, loader=loader, retry_seconds=retry, threads=threads) for r in references
        ]
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            from threattune.errors import ConfigError

            raise ConfigError(
                "two served models have the same name",
                field="--model",
                expected="one reference per registered model name",
                found=", ".join(references),
            )
        self.reload_seconds = reload_seconds
        self._on_loaded = on_loaded
        self._on_checked = on_checked
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._versions_every = max(1, int(round(60.0 / reload_seconds)))

    def start(self) -> None:
        """Start the thread that loads every model, then follows their aliases."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following aliases (a load under way finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def check_now(self) -> None:
        """Check every alias once, in the calling thread."""
        for served in self.models:
            loaded = served.refresh()
            if loaded is not None and self._on_loaded is not None:
                try:
                    self._on_loaded(served, loaded)
                except Exception:  # noqa: BLE001 - bookkeeping must not stop serving
                    logger.exception("recording the load of %s failed", loaded.model_version)
            if self._on_checked is not None:
                self._on_checked(served)

    @property
    def ready(self) -> bool:
        """Whether every configured model has a version loaded."""
        return all(m.current is not None for m in self.models)

    def find(self, kind: str, name: str | None) -> ServedModel | None:
        """The served model called ``name``, or the first of ``kind`` that is loaded."""
        if name is not None:
            for served in self.models:
                if name in (served.name, served.reference):
                    return served
            return None
        candidates = [m for m in self.models if m.kind == kind]
        return candidates[0] if candidates else None

    def _run(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            self.check_now()
            if rounds % self._versions_every == 0:
                for served in self.models:
                    served.refresh_versions()
            rounds += 1
            self._stop.wait(self.reload_seconds)
