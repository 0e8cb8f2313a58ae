"""The ``serve`` and ``serve-keys`` commands: the REST service and dashboard, and its API keys.

``register(app)`` adds both to the ``threattune`` command line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

logger = logging.getLogger(__name__)

_STORE_HELP = (
    "Service database (alerts, verdicts, diagnoses, keys): sqlite:///service.db or "
    "postgresql+pg8000://USER@HOST/DB."
)
_DEFAULT_STORE = "sqlite:///service.db"

keys_app = typer.Typer(
    help="API keys of the REST service: add (shown once), list, revoke.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``threattune serve`` and ``threattune serve-keys`` to ``app``."""
    app.command("serve")(serve_command)
    app.add_typer(keys_app, name="serve-keys")


def serve_command(
    model: Annotated[
        list[str],
        typer.Option(
            help="A model to serve, repeatable: models:/NAME@ALIAS (followed when the alias "
            "moves), models:/NAME/VERSION or a model folder."
        ),
    ],
    cascade: Annotated[
        list[Path] | None,
        typer.Option(
            help="Two-stage scoring, repeatable: a folder 'threattune cascade train' wrote. Its "
            "stage two filters the alerts of the served model version it was trained on."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = _DEFAULT_STORE,
    reload_seconds: Annotated[
        float, typer.Option(help="How often registry aliases are checked, in seconds.")
    ] = 30.0,
    scoring_threads: Annotated[
        int,
        typer.Option(help="Threads one flow prediction may use (requests run side by side)."),
    ] = 1,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MiB.")] = 16.0,
    max_flows: Annotated[int, typer.Option(help="Most flows (or verdicts) per request.")] = 10_000,
    max_emails: Annotated[int, typer.Option(help="Most emails per request.")] = 500,
    public_metrics: Annotated[
        bool,
        typer.Option(help="Serve /metrics without a key (default: a read-scope key is needed)."),
    ] = False,
    secure_cookies: Annotated[
        bool,
        typer.Option(help="Mark the dashboard cookie Secure (set it when behind HTTPS)."),
    ] = False,
    log_requests: Annotated[bool, typer.Option(help="Log every request (uvicorn).")] = False,
) -> None:
    """Run the REST service and dashboard: scoring, verdicts, diagnoses, models, metrics.

    Example: threattune serve --model models:/threattune-nsl-kdd@champion --port 8080
    """
    import uvicorn

    from threattune.service import Limits, ServiceSettings, create_app
    from threattune.service.settings import MB

    settings = ServiceSettings(
        models=tuple(model),
        cascades=tuple(str(folder) for folder in cascade or ()),
        store=store,
        reload_seconds=reload_seconds,
        scoring_threads=scoring_threads,
        limits=Limits(
            max_body_bytes=int(max_body_mb * MB), max_flows=max_flows, max_emails=max_emails
        ),
        public_metrics=public_metrics,
        secure_cookies=secure_cookies,
    )
    app = create_app(settings)
    app.state.service.store.engine  # noqa: B018 - refuse a bad store URL before listening
    if not app.state.service.store.keys():
        typer.echo(
            "warning: no API keys yet; add one with 'threattune serve-keys add NAME "
            f"--scope read --scope write --store {store}'",
            err=True,
        )
    typer.echo(f"threattune service on http://{host}:{port}/ (store {store})", err=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info" if log_requests else "warning",
        access_log=log_requests,
        server_header=False,
        proxy_headers=False,
    )


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="Who or what uses the key, e.g. soar-ingest.")],
    scope: Annotated[list[str], typer.Option(help="read and/or write; repeatable.")] = ["read"],  # noqa: B006 - typer reads the default list, never mutates it
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = _DEFAULT_STORE,
) -> None:
    """Make a key and print it once; only its salted hash is stored."""
    from threattune.service.keys import KeyRing
    from threattune.service.store import ServiceStore

    with ServiceStore(store) as service_store:
        key, record = KeyRing(service_store).add(name, scope)
    typer.echo(key)
    typer.echo(
        f"key {record.key_id} ({record.name}) with scopes {','.join(sorted(record.scopes))}; "
        "shown once: store it now",
        err=True,
    )


@keys_app.command("list")
def keys_list(
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = _DEFAULT_STORE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List keys: id, name, scopes, created, revoked. Never the keys themselves."""
    from threattune.service.store import ServiceStore

    with ServiceStore(store) as service_store:
        records = service_store.keys()
    rows = [
        {
            "key_id": r.key_id,
            "name": r.name,
            "scopes": sorted(r.scopes),
            "created_at": r.created_at.isoformat(),
            "revoked_at": None if r.revoked_at is None else r.revoked_at.isoformat(),
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no keys")
        return
    typer.echo(f"{'key id':14} {'scopes':12} {'created':26} {'revoked':26} name")
    for row in rows:
        typer.echo(
            f"{row['key_id']:14} {','.join(row['scopes']):12} {row['created_at'][:25]:26} "
            f"{(row['revoked_at'] or '-')[:25]:26} {row['name']}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id that 'serve-keys list' shows.")],
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = _DEFAULT_STORE,
) -> None:
    """Revoke a key at once; its dashboard sessions end too."""
    from threattune.errors import ConfigError
    from threattune.service.store import ServiceStore

    with ServiceStore(store) as service_store:
        if not service_store.revoke_key(key_id.strip()):
            raise ConfigError(
                "no active key with this id",
                field="KEY_ID",
                found=key_id,
                fix="list the keys with 'threattune serve-keys list'",
            )
    typer.echo(f"revoked {key_id}")
