"""MLflow: every training run tracked, every model versioned, registered and found by alias.

By default runs go to a SQLite store, ``mlruns.db`` in the working folder, with artifacts
beside it in ``mlartifacts/``; ``MLFLOW_TRACKING_URI`` points elsewhere (a tracking server, a
PostgreSQL store). Models log as MLflow pyfunc models from code, so loading one never unpickles
a Python object: the pyfunc wrapper is a source file and the model itself is the flow-model
folder (:mod:`threattune.flow_model`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from threattune import __version__
from threattune.errors import ModelError, TrackingError

logger = logging.getLogger(__name__)

__all__ = [
    "RegisteredVersion",
    "log_flow_model",
    "registered_model_name",
    "resolve_model",
    "set_alias",
    "start_run",
    "tracking_uri",
]

_PYFUNC_SOURCE = Path(__file__).with_name("_pyfunc.py")
_PYFUNC_MAIL_SOURCE = Path(__file__).with_name("_pyfunc_mail.py")
_MODEL_URI = re.compile(r"^(models|runs):/")


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version in the MLflow registry."""

    name: str
    version: str
    run_id: str
    uri: str


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or a SQLite store in the working folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _require_store(
    error: type[TrackingError] | type[ModelError] = TrackingError, what: str = ""
) -> None:
    """Refuse to read from a SQLite store that does not exist, rather than create an empty one."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise error(
            f"{what}no MLflow store here",
            field="MLFLOW_TRACKING_URI",
            found=uri,
            fix="run from the folder where 'threattune train' ran, or set MLFLOW_TRACKING_URI "
            "to the store that holds the model",
        )


def registered_model_name(task_name: str) -> str:
    """The registry name of a task's flow model."""
    return f"threattune-{re.sub(r'[^A-Za-z0-9_.-]+', '-', task_name)}"


@contextmanager
def start_run(experiment: str, run_name: str, tags: dict[str, str] | None = None) -> Iterator[str]:
    """Start an MLflow run in ``experiment``; yields its run id."""
    mlflow = _mlflow()
    try:
        if mlflow.get_experiment_by_name(experiment) is None:
            artifacts = _default_artifact_root()
            mlflow.create_experiment(experiment, artifact_location=artifacts)
        mlflow.set_experiment(experiment)
    except Exception as exc:  # MLflow raises many types; name the store and move on
        raise TrackingError(
            f"cannot open the MLflow experiment '{experiment}': {exc}",
            field="MLFLOW_TRACKING_URI",
            found=tracking_uri(),
            fix="check the tracking URI and that the store is reachable and writable",
        ) from exc
    with mlflow.start_run(
        run_name=run_name, tags={"threattune.version": __version__, **(tags or {})}
    ) as run:
        yield run.info.run_id


def _default_artifact_root() -> str | None:
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        return (database.parent / "mlartifacts").resolve().as_uri()
    return None


def log_params(params: dict[str, Any]) -> None:
    """Log run parameters, values as text."""
    _mlflow().log_params({k: str(v)[:500] for k, v in params.items()})


def log_metrics(metrics: dict[str, float]) -> None:
    """Log numeric metrics, skipping undefined ones."""
    clean = {k: float(v) for k, v in metrics.items() if v == v}
    _mlflow().log_metrics(clean)


def log_artifacts(folder: Path, artifact_path: str) -> None:
    """Log every file of ``folder`` under ``artifact_path``."""
    _mlflow().log_artifacts(str(folder), artifact_path=artifact_path)


def log_flow_model(
    model_folder: Path,
    *,
    registered_name: str | None,
    input_example: pd.DataFrame,
) -> RegisteredVersion | None:
    """Log the flow model of the active run as a pyfunc model and register it.

    Returns the registered version, or None when ``registered_name`` is None.
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    from threattune.flow_model import FlowModel
    from threattune.scoring import score_frame

    model = FlowModel.load(model_folder, with_baseline=False)
    signature = infer_signature(input_example, score_frame(model, input_example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC_SOURCE),
            artifacts={"flow_model": str(model_folder)},
            signature=signature,
            input_example=input_example,
            registered_model_name=registered_name,
            pip_requirements=_requirements(),
        )
    if registered_name is None:
        return None
    version = str(info.registered_model_version)
    logger.info("registered %s version %s", registered_name, version)
    return RegisteredVersion(
        registered_name, version, info.run_id, f"models:/{registered_name}/{version}"
    )


def log_mail_model(model_folder: Path, *, registered_name: str | None) -> RegisteredVersion | None:
    """Log the mail model of the active run as a pyfunc model and register it.

    Its input is a DataFrame with a ``raw`` column of RFC 822 messages.
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    from threattune.mail_model import MailModel
    from threattune.mail_scoring import score_raw

    model = MailModel.load(model_folder, with_baseline=False)
    example = pd.DataFrame({"raw": [_EXAMPLE_MESSAGE]})
    signature = infer_signature(example, score_raw(model, example["raw"].tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC_MAIL_SOURCE),
            artifacts={"mail_model": str(model_folder)},
            signature=signature,
            registered_model_name=registered_name,
            pip_requirements=_requirements(("torch", "transformers", "tokenizers", "safetensors")),
        )
    if registered_name is None:
        return None
    version = str(info.registered_model_version)
    logger.info("registered %s version %s", registered_name, version)
    return RegisteredVersion(
        registered_name, version, info.run_id, f"models:/{registered_name}/{version}"
    )


_EXAMPLE_MESSAGE = (
    "From: IT Desk <it@example.com>\nTo: you@example.org\nSubject: Password expiry\n\n"
    "Your password expires today. Keep it at https://example.com/keep\n"
)


def _requirements(extra: tuple[str, ...] = ()) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("xgboost-cpu", "scikit-learn", "skops", "pandas", "numpy", "pyarrow", *extra):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return [*pins, f"threattune=={__version__}"]


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` (for instance ``champion``) of a registered model at ``version``."""
    mlflow = _mlflow()
    try:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(
            f"cannot point alias '{alias}' at {name} version {version}: {str(exc).splitlines()[0]}",
            field="VERSION",
            found=f"tracking URI {tracking_uri()}",
            fix="list the registered versions with 'threattune models list'",
        ) from exc


def aliases(name: str) -> dict[str, str]:
    """The aliases of a registered model and the versions they point at."""
    mlflow = _mlflow()
    try:
        registered = mlflow.MlflowClient().get_registered_model(name)
    except Exception:  # noqa: BLE001 - absent model: no aliases
        return {}
    return dict(registered.aliases)


def list_versions(name: str | None = None) -> list[dict[str, Any]]:
    """Registered flow-model versions, newest first, with their aliases."""
    _require_store()
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    query = f"name='{name}'" if name else ""
    versions = client.search_model_versions(query)
    aliases: dict[tuple[str, str], list[str]] = {}
    for model_name in {v.name for v in versions}:
        for alias, version in client.get_registered_model(model_name).aliases.items():
            aliases.setdefault((model_name, str(version)), []).append(alias)
    rows = []
    for v in versions:
        rows.append(
            {
                "name": v.name,
                "version": v.version,
                "run_id": v.run_id,
                "created": pd.Timestamp(v.creation_timestamp, unit="ms").isoformat(),
                "aliases": ",".join(sorted(aliases.get((v.name, str(v.version)), []))),
            }
        )
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))


OPERATING_POINT_TAG = "threattune.operating_point"
_MAX_TAG_CHARACTERS = 100_000
"""MLflow's limit on a model-version tag value."""


def open_model(reference: str | Path, *, with_baseline: bool = True) -> Any:
    """Load a flow or mail model from a folder or an MLflow URI.

    For a registry version, an operating point stored later as the version's tag (by
    ``threattune threshold``) overrides the one the model was trained with.
    """
    from threattune.flow_model import FlowModel
    from threattune.mail_model import MailModel, is_mail_model

    folder = resolve_model(reference)
    if is_mail_model(folder):
        model: Any = MailModel.load(folder, with_baseline=with_baseline)
    else:
        model = FlowModel.load(folder, with_baseline=with_baseline)
    text = str(reference)
    if text.startswith("models:/"):
        version = _registry_version(text)
        if version is not None and OPERATING_POINT_TAG in version.tags:
            model.manifest["operating_point"] = json.loads(version.tags[OPERATING_POINT_TAG])
            model.manifest["registry_version"] = f"{version.name}/{version.version}"
    return model


def _registry_version(uri: str) -> Any:
    """The registry entry behind ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    client = _mlflow().MlflowClient()
    body = uri.removeprefix("models:/")
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = body.partition("/")
        return client.get_model_version(name, version) if version.isdigit() else None
    except Exception:  # noqa: BLE001 - resolve_model already reported a missing model
        return None


def store_operating_point(uri: str, point: dict[str, Any]) -> str:
    """Store an operating point as the tag of a registry version; returns NAME/VERSION.

    The point's calibration, when it has one, travels inside the same JSON, so that loading
    the version (:func:`open_model`) applies the calibration its threshold was set after.
    """
    version = _registry_version(uri)
    if version is None:
        raise TrackingError(
            "no registry version behind the URI",
            field="--model",
            found=uri,
            fix="use models:/NAME/VERSION or models:/NAME@ALIAS",
        )
    text = json.dumps(point)
    if len(text) > _MAX_TAG_CHARACTERS:
        raise TrackingError(
            "the operating point is too long for a registry tag",
            field=OPERATING_POINT_TAG,
            expected=f"at most {_MAX_TAG_CHARACTERS:,} characters of JSON",
            found=f"{len(text):,} characters (its calibration is stored with it)",
            fix="choose the point with --calibration sigmoid or none, or on a model folder",
        )
    _mlflow().MlflowClient().set_model_version_tag(
        version.name, version.version, OPERATING_POINT_TAG, text
    )
    return f"{version.name}/{version.version}"


def resolve_model(reference: str | Path) -> Path:
    """The local flow-model folder for a path or an MLflow URI.

    ``reference`` is a folder written by ``threattune train``, or ``models:/NAME/VERSION``,
    ``models:/NAME@ALIAS`` or ``runs:/RUN_ID/model``, which are downloaded from MLflow.
    """
    text = str(reference)
    if not _MODEL_URI.match(text):
        folder = Path(text)
        if not folder.exists():
            raise ModelError(
                "model not found",
                path=folder,
                fix="pass the model folder that 'threattune train' printed, or a registry URI "
                "such as models:/threattune-nsl-kdd@champion",
            )
        return folder
    _require_store(ModelError, f"cannot load '{text}' from MLflow: ")
    mlflow = _mlflow()
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
    except Exception as exc:  # MLflow raises many types for an unknown model or alias
        raise ModelError(
            f"cannot load '{text}' from MLflow: {str(exc).splitlines()[0]}",
            field="--model",
            found=f"tracking URI {tracking_uri()}",
            fix="check the name, version or alias with 'threattune models list', and that "
            "MLFLOW_TRACKING_URI points at the store the model was registered in",
        ) from exc
    candidates = [p.parent for p in local.rglob("manifest.json")]
    if not candidates:
        raise ModelError("the MLflow model holds no threattune model", path=local)
    return candidates[0]
