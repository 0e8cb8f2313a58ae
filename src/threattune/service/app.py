"""The REST service and dashboard: scoring, verdicts, diagnoses, models, health and metrics.

``create_app(settings)`` builds the FastAPI application; ``threattune serve`` runs it under
uvicorn. Every route but health, readiness, the OpenAPI schema, static files and the sign-in
pages needs an API key (``X-API-Key: KEY`` or ``Authorization: Bearer KEY``) with the route's
scope, or for reading a dashboard session cookie. Requests larger than the configured limits
are refused with 413 before anything is parsed. Every error is JSON naming the field, what
was expected, what was found and the fix.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threattune import __version__
from threattune.errors import DataError, ModelError, ThreatTuneError
from threattune.service import alerts as scoring
from threattune.service.dashboard import build_dashboard
from threattune.service.diagnoses import summarise_diagnosis
from threattune.service.keys import READ, WRITE, KeyRing, Principal
from threattune.service.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from threattune.service.served import FLOW, MAIL, LoadedModel, ModelSet, ServedModel
from threattune.service.settings import ServiceSettings
from threattune.service.store import DiagnosisRecord, ServiceStore
from threattune.verdicts import normalise_verdict

logger = logging.getLogger(__name__)

__all__ = ["SESSION_COOKIE", "Service", "create_app"]

SESSION_COOKIE = "tt_session"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_STATIC = Path(__file__).with_name("static")


# --- request and response bodies ---------------------------------------------------------------


class FlowBatch(BaseModel):
    """Flows to score: JSON objects keyed by the model's feature names."""

    model: str | None = Field(None, description="Served model name; default: the first flow model.")
    flows: list[dict[str, Any]] = Field(
        ..., description="One object per flow; keys that are not features go into the summary."
    )


class EmailIn(BaseModel):
    """One email as raw RFC 822 text (headers, blank line, body)."""

    raw: str = Field(..., description="The whole message as text, headers first.")
    source: str | None = Field(None, description="Where it came from, kept with the alert.")


class EmailBatch(BaseModel):
    """Emails to score."""

    model: str | None = Field(None, description="Served mail model name; default: the first.")
    messages: list[EmailIn]


class VerdictIn(BaseModel):
    """An analyst's verdict on an alert (the fields of threattune.verdicts.Verdict)."""

    alert_id: str
    model_version: str | None = Field(
        None, description="NAME/VERSION; default: the version that raised the stored alert."
    )
    verdict: str = Field(..., description="true_positive, false_positive, benign_true_positive")
    root_cause: str | None = None
    note: str | None = None
    analyst: str
    time: datetime | None = Field(None, description="ISO 8601; default: when received.")
    extra: dict[str, Any] = Field(default_factory=dict)


class VerdictBatch(BaseModel):
    """Verdicts to store, all or nothing."""

    verdicts: list[VerdictIn]


class ScoreResult(BaseModel):
    index: int
    alert_id: str | None
    alert: bool
    score: float
    techniques: str
    class_: str = Field(alias="class")
    attack_score: float | None = None
    stage_one_alert: bool | None = Field(
        default=None, description="Two-stage scoring: whether stage one raised an alert."
    )
    stage_two_score: float | None = Field(
        default=None, description="Two-stage scoring: P(true positive) of stage one's alerts."
    )
    guarded: bool | None = Field(
        default=None, description="Two-stage scoring: kept by the recall guard alone."
    )
    message_id: str | None = Field(default=None, description="Mail: the Message-ID header.")
    subject: str | None = Field(default=None, description="Mail: the subject.")
    from_: str | None = Field(default=None, alias="from", description="Mail: the sender.")
    urls: list[str] | None = Field(default=None, description="Mail: links, defanged.")
    suspicious_urls: list[str] | None = Field(
        default=None, description="Mail: links that look wrong, each with why."
    )
    signals: list[str] | None = Field(
        default=None, description="Mail: header flags (Reply-To mismatch, failed SPF, ...)."
    )
    attachments: list[str] | None = Field(
        default=None, description="Mail: attachments by name, type and size; never opened."
    )


class ScoreResponse(BaseModel):
    model: str
    model_version: str
    scored: int
    alerts: int
    cascade: str | None = Field(
        default=None, description="The cascade folder whose stage two filtered the alerts."
    )
    results: list[ScoreResult]


class ErrorBody(BaseModel):
    status: int
    message: str
    field: str | None = None
    expected: str | None = None
    found: str | None = None
    fix: str | None = None
    limit: int | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 503)
}


# --- the service -----------------------------------------------------------------------------


class Service:
    """What the routes share: settings, store, keys, served models, metrics, templates."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        loader: Callable[[str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = ServiceStore(settings.store)
        self.keys = KeyRing(
            self.store, session_hours=settings.session_hours, link_seconds=settings.link_seconds
        )
        self.metrics = ServiceMetrics()
        self._cascades: dict[tuple[str, str], tuple[datetime, Any]] = {}
        self._cascade_lock = threading.Lock()
        options: dict[str, Any] = {
            "reload_seconds": settings.reload_seconds,
            "threads": settings.scoring_threads,
        }
        if loader is not None:
            options["loader"] = loader
        self.models = ModelSet(
            settings.models, on_loaded=self._loaded, on_checked=self._checked, **options
        )
        self.templates = Environment(
            loader=PackageLoader("threattune.service", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            pct=_percent, num=_count, dec=_decimal, when=_when, point=_point
        )

    def start(self) -> None:
        """Open the store, restore the latest drift metrics, start loading models."""
        self.store.engine  # noqa: B018 - creates the schema before the first request
        latest: dict[str, DiagnosisRecord] = {}
        for record in self.store.diagnoses(limit=1000):
            latest[record.model_name] = record
        for name, record in latest.items():
            self.metrics.diagnosis(name, record.summary, record.diagnosed_at.timestamp())
        self.metrics.ready.set(0)
        self.models.start()

    def stop(self) -> None:
        self.models.stop()
        self.store.close()

    def _loaded(self, served: ServedModel, loaded: LoadedModel) -> None:
        self.store.record_served_version(
            model_name=loaded.name,
            version=loaded.version,
            kind=loaded.kind,
            reference=loaded.reference,
            operating_point=loaded.operating_point,
            classes=loaded.classes,
        )

    def _checked(self, served: ServedModel) -> None:
        current = served.current
        self.metrics.served(
            served.name,
            None if current is None else current.version,
            None if current is None else current.loaded_at.timestamp(),
        )
        self.metrics.reload_state(served.name, served.failures, served.failing)
        self.metrics.ready.set(1 if self.models.ready else 0)

    def model_for(self, kind: str, name: str | None) -> LoadedModel:
        """The loaded model that should score a request, or a 404/503 error."""
        served = self.models.find(kind, name)
        if served is None and name is not None:
            raise HttpError(
                404,
                f"no served model is called '{name}'",
                field="model",
                expected=", ".join(m.name for m in self.models.models) or "a served model",
                found=name,
                fix="list the served models with GET /api/v1/models",
            )
        loading = any(m.current is None for m in self.models.models)
        if served is None and not loading:
            trained_by = "'threattune train phishing'" if kind == MAIL else "'threattune train'"
            raise HttpError(
                503,
                f"no {kind} model configured",
                field="model",
                expected=f"a served {kind} model",
                found=", ".join(f"{m.name} ({m.kind})" for m in self.models.models) or "none",
                fix=f"start threattune serve with --model pointing at a {kind} model "
                f"(trained by {trained_by})",
            )
        current = None if served is None else served.current
        if current is None:
            raise HttpError(
                503,
                f"no {kind} model is loaded yet",
                field="model",
                expected=f"a loaded {kind} model",
                found="none (see GET /readyz)",
                fix="wait for /readyz to answer 200, or check the --model references",
            )
        if current.kind != kind:
            raise HttpError(
                422,
                f"'{current.name}' is a {current.kind} model, not a {kind} model",
                field="model",
                expected=f"a {kind} model",
                found=current.name,
            )
        return current

    def cascade_for(self, loaded: LoadedModel) -> Any:
        """The configured cascade trained on this model version, or None (loaded once each).

        A cascade whose stage one is another version (the alias moved on) lies idle: the
        version is scored by stage one alone until a cascade trained on it is configured.
        """
        if not self.settings.cascades:
            return None
        with self._cascade_lock:
            for folder in self.settings.cascades:
                # one entry per served model: a reload replaces it, so old versions are freed
                key = (folder, loaded.name)
                known = self._cascades.get(key)
                if known is None or known[0] != loaded.loaded_at:
                    known = (loaded.loaded_at, _open_cascade(folder, loaded))
                    self._cascades[key] = known
                if known[1] is not None:
                    return known[1]
        return None

    def record_scoring(self, batch: scoring.ScoredBatch) -> None:
        """Store the alerts (committed before the answer) and count them."""
        self.store.add_alerts(batch.alerts)
        loaded = batch.model
        self.metrics.scored.labels(loaded.name, loaded.kind).inc(len(batch.results))
        for alert_class, count in batch.by_class.items():
            self.metrics.alerts.labels(loaded.name, alert_class).inc(count)


def _open_cascade(folder: str, loaded: LoadedModel) -> Any:
    """The cascade in ``folder`` on this loaded model, or None when it was trained on another."""
    from threattune.cascade import Cascade, with_stage_two_inputs

    try:
        cascade = Cascade.load(folder, stage_one=with_stage_two_inputs(loaded.model))
    except ThreatTuneError as error:
        logger.info("cascade %s does not apply to %s: %s", folder, loaded.model_version,
                    error.message)  # fmt: skip
        return None
    logger.info("cascade %s filters the alerts of %s", folder, loaded.model_version)
    return cascade


class HttpError(ThreatTuneError):
    """An error answered with ``status`` and the usual JSON error body."""

    def __init__(self, status: int, message: str, **where: Any) -> None:
        super().__init__(message, **where)
        self.status = status


# --- middleware ------------------------------------------------------------------------------


class _Guard:
    """Security headers on every answer, the body-size limit, and request metrics.

    The body is read here, up to the limit, before the application sees the request; a
    declared or actual body over the limit is answered with 413 and never parsed.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
                if b"cache-control" not in names and not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            limit = self.service.settings.limits.max_body_bytes
            body = await _read_body(scope, receive, limit)
            if body is None:
                response = _error_json(
                    413,
                    "the request body is too large",
                    field="body",
                    expected=f"at most {limit:,} bytes",
                    found="more",
                    fix="send fewer flows or emails per request, or raise --max-body-mb",
                    limit=limit,
                )
                await response(scope, receive, guarded_send)
                return
            await self.app(scope, _replay(body, receive), guarded_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            method = scope.get("method", "")
            self.service.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.service.metrics.latency.labels(method, template).observe(elapsed)


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is (or declares to be) over ``limit`` bytes."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


# --- errors ----------------------------------------------------------------------------------


def _error_json(status: int, message: str, **where: Any) -> JSONResponse:
    body = {"status": status, "message": message}
    body.update({k: v for k, v in where.items() if v is not None})
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _status_of(error: ThreatTuneError) -> int:
    if isinstance(error, HttpError):
        return error.status
    if isinstance(error, scoring.LimitExceeded):
        return 413
    if isinstance(error, ModelError):
        return 503
    if isinstance(error, DataError) and error.field == "store":
        return 503
    return 422


async def _threattune_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ThreatTuneError)
    status = _status_of(error)
    if status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, error)
    where = {
        "field": error.field,
        "expected": error.expected,
        "found": error.found,
        "fix": error.fix,
    }
    if isinstance(error, scoring.LimitExceeded):
        where["limit"] = error.limit
    if error.line is not None:
        where["line"] = error.line
    return _error_json(status, error.message, **where)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {}
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    found = first.get("input")
    return _error_json(
        422,
        f"invalid request: {first.get('msg', 'does not match the schema')}",
        field=".".join(location) or "body",
        expected="a body as described in /openapi.json",
        found=None if found is None else repr(found)[:200],
        problems=len(problems),
    )


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return _error_json(500, "internal error; the service log has the details")


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return _error_json(error.status_code, str(error.detail))


# --- authentication --------------------------------------------------------------------------


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _principal(request: Request) -> Principal | None:
    """The principal of the request's key or session cookie; 401 for a bad key."""
    service: Service = request.app.state.service
    key = _presented_key(request)
    if key is not None:
        principal = service.keys.authenticate(key)
        if principal is None:
            raise HttpError(
                401,
                "invalid or revoked API key",
                field="X-API-Key",
                expected="a key made by 'threattune serve-keys add'",
                found="a key that does not open this service",
                fix="ask for a new key; keys are shown once, when made",
            )
        return principal
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        return service.keys.session(token)
    return None


def _requiring(scope: str) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        principal = _principal(request)
        if principal is None:
            raise HttpError(
                401,
                "an API key is required",
                field="X-API-Key",
                expected=f"an API key with the '{scope}' scope, as X-API-Key or Bearer",
                found="no key",
                fix="threattune serve-keys add NAME --scope " + scope,
            )
        if not principal.can(scope):
            raise HttpError(
                403,
                f"this key lacks the '{scope}' scope",
                field="X-API-Key",
                expected=f"a key with the '{scope}' scope",
                found=f"key '{principal.name}' with " + (",".join(sorted(principal.scopes))),
                fix="use a key made with --scope " + scope,
            )
        return principal

    return dependency


Reader = Annotated[Principal, Depends(_requiring(READ))]
Writer = Annotated[Principal, Depends(_requiring(WRITE))]


def _service(request: Request) -> Service:
    return request.app.state.service


# --- the application -------------------------------------------------------------------------


def create_app(settings: ServiceSettings, *, loader: Callable[[str], Any] | None = None) -> FastAPI:
    """The FastAPI application; models load in the background once it starts."""
    service = Service(settings, loader=loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="threattune",
        version=__version__,
        description="Scores flows and emails with registered threattune models, keeps alerts, "
        "verdicts and diagnoses, and shows them on a dashboard.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(_Guard, service=service)
    app.add_exception_handler(ThreatTuneError, _threattune_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    _health_routes(app, service)
    _scoring_routes(app, service)
    _record_routes(app, service)
    _dashboard_routes(app, service)
    return app


def _health_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers.")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: every configured model is loaded.",
        responses={503: {"description": "a model is not loaded yet"}},
    )
    def readyz() -> JSONResponse:
        models = [
            {
                "name": m.name,
                "version": None if m.current is None else m.current.version,
                "reload_failing": m.failing,
            }
            for m in service.models.models
        ]
        ready = service.models.ready
        degraded = any(m["reload_failing"] for m in models)
        state = "not ready" if not ready else "degraded" if degraded else "ready"
        return JSONResponse({"status": state, "models": models}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics.")
    def metrics(request: Request) -> Response:
        if not service.settings.public_metrics:
            _requiring(READ)(request)
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _scoring_routes(app: FastAPI, service: Service) -> None:
    limits = service.settings.limits

    @app.post(
        "/api/v1/flows/score",
        tags=["scoring"],
        summary="Score flows given as JSON objects; alerts are stored before the answer.",
        response_model=ScoreResponse,
        responses=_ERRORS,
    )
    def score_flows(batch: FlowBatch, principal: Writer) -> JSONResponse:
        scoring.check_count(len(batch.flows), limits.max_flows, "flows", "flows")
        loaded = service.model_for(FLOW, batch.model)
        scored = scoring.score_flows(loaded, batch.flows, cascade=service.cascade_for(loaded))
        service.record_scoring(scored)
        return JSONResponse(scored.to_dict())

    @app.post(
        "/api/v1/flows/score-file",
        tags=["scoring"],
        summary="Score an uploaded CSV file of flows (a header row, or headerless NSL-KDD).",
        response_model=ScoreResponse,
        responses=_ERRORS,
    )
    def score_flow_file(
        principal: Writer,
        file: Annotated[UploadFile, File(description="CSV of flows")],
        model: Annotated[str | None, Form()] = None,
        delimiter: Annotated[str, Form(max_length=1, min_length=1)] = ",",
    ) -> JSONResponse:
        loaded = service.model_for(FLOW, model)
        with _spooled(file) as path:
            scored = scoring.score_flow_file(
                loaded, path, limit=limits.max_flows, delimiter=delimiter,
                cascade=service.cascade_for(loaded),
            )  # fmt: skip
        service.record_scoring(scored)
        return JSONResponse(scored.to_dict())

    @app.post(
        "/api/v1/emails/score",
        tags=["scoring"],
        summary="Score emails given as raw RFC 822 text; alerts are stored before the answer.",
        response_model=ScoreResponse,
        responses=_ERRORS,
    )
    def score_emails(batch: EmailBatch, principal: Writer) -> JSONResponse:
        scoring.check_count(len(batch.messages), limits.max_emails, "messages", "emails")
        loaded = service.model_for(MAIL, batch.model)
        raw = [
            (m.source or f"messages[{i}]", m.raw.encode("utf-8", "replace"))
            for i, m in enumerate(batch.messages)
        ]
        scored = scoring.score_emails(
            loaded, scoring.parse_emails(raw), cascade=service.cascade_for(loaded)
        )
        service.record_scoring(scored)
        return JSONResponse(scored.to_dict())

    @app.post(
        "/api/v1/emails/score-file",
        tags=["scoring"],
        summary="Score an uploaded mbox or .eml file.",
        response_model=ScoreResponse,
        responses=_ERRORS,
    )
    def score_email_file(
        principal: Writer,
        file: Annotated[UploadFile, File(description="An mbox or a single .eml message")],
        model: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        loaded = service.model_for(MAIL, model)
        with _spooled(file) as path:
            messages = scoring.read_mail_upload(
                path, file.filename or "upload", limit=limits.max_emails
            )
        scored = scoring.score_emails(loaded, messages, cascade=service.cascade_for(loaded))
        service.record_scoring(scored)
        return JSONResponse(scored.to_dict())


@contextmanager
def _spooled(upload: UploadFile) -> Iterator[Path]:
    """An upload copied to a private temporary file, removed afterwards."""
    suffix = Path(upload.filename or "").suffix.lower()
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else ""
    handle, name = tempfile.mkstemp(prefix="threattune-upload-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            upload.file.seek(0)
            while chunk := upload.file.read(1024 * 1024):
                out.write(chunk)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _record_routes(app: FastAPI, service: Service) -> None:
    store = service.store

    @app.post(
        "/api/v1/verdicts",
        tags=["verdicts"],
        summary="Store analysts' verdicts, all or nothing; re-sending them changes nothing.",
        responses=_ERRORS,
    )
    def post_verdicts(batch: VerdictBatch, principal: Writer) -> dict[str, Any]:
        scoring.check_count(
            len(batch.verdicts), service.settings.limits.max_flows, "verdicts", "verdicts"
        )
        if not batch.verdicts:
            raise HttpError(422, "no verdicts", field="verdicts", expected="at least one")
        known = store.model_versions_of([v.alert_id for v in batch.verdicts])
        now = datetime.now(UTC)
        records = []
        for position, verdict in enumerate(batch.verdicts):
            version = verdict.model_version or known.get(verdict.alert_id)
            if version is None:
                raise HttpError(
                    422,
                    "the verdict names no model version and its alert is not stored here",
                    field=f"verdicts[{position}].model_version",
                    expected="NAME/VERSION of the model that raised the alert",
                    found=f"alert {verdict.alert_id!r}",
                    fix="send model_version with the verdict",
                )
            record = verdict.model_dump(exclude_none=True)
            record["model_version"] = version
            record["time"] = verdict.time or now
            records.append(record)
        summary = store.verdicts.import_records(records, source=f"api:{principal.name}")
        for record in records:
            service.metrics.verdicts.labels(normalise_verdict(record["verdict"])).inc()
        return {
            "inserted": summary.inserted,
            "updated": summary.updated,
            "unchanged": summary.unchanged,
            "unknown_alerts": sorted({v.alert_id for v in batch.verdicts} - set(known)),
        }

    @app.get("/api/v1/verdicts", tags=["verdicts"], summary="Stored verdicts, newest first.")
    def get_verdicts(
        principal: Reader,
        model_version: str | None = None,
        alert_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        if alert_id is not None:
            alert = store.alert(alert_id)
            version = model_version or (alert.model_version if alert else None)
            found = store.verdicts.list(model_version=version, limit=None, newest_first=True)
            found = [v for v in found if v.alert_id == alert_id][:limit]
        else:
            found = store.verdicts.list(model_version=model_version, limit=limit, newest_first=True)
        return {"verdicts": [v.to_dict() for v in found]}

    @app.get(
        "/api/v1/verdicts/stats",
        tags=["verdicts"],
        summary="Counts per verdict and root cause, and the false-positive share.",
    )
    def verdict_stats(principal: Reader, model_version: str | None = None) -> dict[str, Any]:
        return store.verdicts.stats(model_version)

    @app.get("/api/v1/alerts", tags=["alerts"], summary="Stored alerts, newest first.")
    def get_alerts(
        principal: Reader,
        model_version: str | None = None,
        alert_class: Annotated[str | None, Query(alias="class")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        found = store.alerts(model_version=model_version, alert_class=alert_class, limit=limit)
        return {"alerts": [a.to_dict() for a in found]}

    @app.get("/api/v1/alerts/{alert_id}", tags=["alerts"], responses=_ERRORS)
    def get_alert(alert_id: str, principal: Reader) -> dict[str, Any]:
        """One alert and the verdicts on it."""
        alert = store.alert(alert_id)
        if alert is None:
            raise HttpError(404, "no such alert", field="alert_id", found=alert_id)
        found = store.verdicts.list(model_version=alert.model_version, limit=None)
        return {
            **alert.to_dict(),
            "verdicts": [v.to_dict() for v in found if v.alert_id == alert_id],
        }

    @app.get(
        "/api/v1/models",
        tags=["models"],
        summary="Served models, their versions and operating points, and reload state.",
    )
    def get_models(principal: Reader) -> dict[str, Any]:
        served = []
        for m in service.models.models:
            current = m.current
            served.append(
                {
                    **m.status(),
                    "operating_point": None if current is None else current.operating_point,
                    "classes": [] if current is None else current.classes,
                    "techniques": {}
                    if current is None or current.kind != FLOW
                    else current.model.technique_labels(),
                    "registry_versions": m.registry_versions,
                }
            )
        return {
            "served": served,
            "history": [v.to_dict() for v in store.served_versions()],
        }

    @app.post(
        "/api/v1/diagnoses",
        tags=["diagnoses"],
        summary="Store the summary of a diagnosis.json written by 'threattune diagnose'.",
        responses=_ERRORS,
    )
    def post_diagnosis(
        report: Annotated[
            dict[str, Any],
            Body(description="The diagnosis.json that 'threattune diagnose' writes, unchanged."),
        ],
        principal: Writer,
        model_version: Annotated[
            str | None,
            Query(
                description="NAME/VERSION diagnosed; default: the version of the served model of "
                "the report's kind (mail or flows) now."
            ),
        ] = None,
        model: Annotated[str | None, Query(description="Served model name.")] = None,
        diagnosed_at: Annotated[
            datetime | None, Query(description="When it ran; default: when received.")
        ] = None,
    ) -> dict[str, Any]:
        summary = summarise_diagnosis(report)
        resolved = "given"
        if model_version is None:
            # a mail diagnosis counts messages; one of flows counts rows
            kind = MAIL if report.get("unit") == "messages" else FLOW
            loaded = service.model_for(kind, model)
            model_version, resolved = loaded.model_version, "served when received"
        name, _, version = model_version.removeprefix("models:/").rpartition("/")
        if not name or not version or "@" in model_version:
            raise HttpError(
                422,
                "the model version must be NAME/VERSION",
                field="model_version",
                expected="NAME/VERSION, e.g. threattune-nsl-kdd/3",
                found=model_version,
            )
        now = datetime.now(UTC)
        moment = diagnosed_at or now
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        record = DiagnosisRecord(
            diagnosed_at=moment,
            received_at=now,
            model_name=name,
            model_version=f"{name}/{version}",
            severity=summary["severity"],
            summary={**summary, "model_version_from": resolved},
        )
        store.add_diagnosis(record)
        service.metrics.diagnosis(name, summary, moment.timestamp())
        return record.to_dict()

    @app.get("/api/v1/diagnoses", tags=["diagnoses"], summary="Stored diagnosis summaries.")
    def get_diagnoses(
        principal: Reader,
        model_version: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> dict[str, Any]:
        found = store.diagnoses(model_version=model_version, limit=limit)
        return {"diagnoses": [d.to_dict() for d in found]}

    @app.post(
        "/api/v1/login-links",
        tags=["dashboard"],
        summary="A one-time dashboard sign-in link, valid for a short while.",
    )
    def login_link(principal: Reader) -> dict[str, Any]:
        token = service.keys.open_link(principal)
        return {
            "url": f"/login/link/{token}",
            "expires_in": int(service.keys.link_lifetime.total_seconds()),
        }


def _dashboard_routes(app: FastAPI, service: Service) -> None:
    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = service.templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status)

    def signed_in(response: Response, principal: Principal) -> Response:
        token = service.keys.open_session(principal)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(service.keys.session_lifetime.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=service.settings.secure_cookies,
            path="/",
        )
        return response

    @app.get("/", include_in_schema=False)
    def dashboard(
        request: Request, hours: Annotated[int | None, Query(ge=1, le=24 * 90)] = None
    ) -> Response:
        principal = _principal(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        if not principal.can(READ):
            raise HttpError(403, "this key lacks the 'read' scope", field="X-API-Key")
        window = hours or service.settings.dashboard_hours
        context = build_dashboard(service.store, service.models, hours=window)
        context["operating_points"] = {
            v.model_version: v.operating_point for v in context["versions"]
        }
        context["signed_in"] = principal.via == "session"
        return page("dashboard.html", **context)

    @app.get("/login", include_in_schema=False)
    def login_form() -> HTMLResponse:
        return page("login.html", error=None)

    @app.post("/login", include_in_schema=False)
    def login(key: Annotated[str, Form(max_length=200)]) -> Response:
        principal = service.keys.authenticate(key)
        if principal is None or not principal.can(READ):
            return page("login.html", 401, error="That key does not open the dashboard.")
        return signed_in(RedirectResponse("/", status_code=303), principal)

    @app.get("/login/link/{token}", include_in_schema=False)
    def login_with_link(token: str) -> Response:
        principal = service.keys.use_link(token)
        if principal is None:
            return page("login.html", 401, error="That sign-in link is spent or expired.")
        return signed_in(RedirectResponse("/", status_code=303), principal)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            service.keys.end_session(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


# --- template filters ------------------------------------------------------------------------


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _decimal(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "—" if value is None else str(value)


def _point(point: Any) -> str:
    if not isinstance(point, dict) or "threshold" not in point:
        return "most probable class"
    parts = [f"{point.get('goal_text') or 'threshold'}: {float(point['threshold']):.4g}"]
    for name in ("precision", "recall", "fpr"):
        if isinstance(point.get(name), int | float):
            parts.append(f"{name} {float(point[name]):.2%}")
    if point.get("achievable") is False:
        parts.append("goal not met")
    return ", ".join(parts)
