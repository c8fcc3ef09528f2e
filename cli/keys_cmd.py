"""``ragctl keys``: API keys in this process's database, or on the server given by ``--server``."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import remote
from cli.remote import fail, target
from core.config import Settings
from core.errors import RagError

keys_app = typer.Typer(help="API keys: create, list, revoke (stored hashed; shown once).")


def _db():  # type: ignore[no-untyped-def]
    from runtime.services import Services

    return Services(Settings()).db


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    role: Annotated[str, typer.Option(help="admin, writer or reader")] = "reader",
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="Limit to these collections (repeat).")
    ] = None,
) -> None:
    server = target(ctx)
    if server.url:
        typer.echo(remote.keys_create(server, name, role, collection or None))
        return
    from core.keys import create_key

    try:
        created = create_key(_db(), name, role, collection or None)
    except RagError as exc:
        fail(exc)
        return
    scope = ", ".join(created.record.collections or ["all collections"])
    typer.echo(f"{created.key}\n(id {created.record.id}, role {created.record.role}, {scope}; shown only once)")


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    server = target(ctx)
    if server.url:
        for line in remote.keys_list(server):
            typer.echo(line)
        return
    from core.keys import list_keys

    for k in list_keys(_db()):
        typer.echo(remote.key_line(k.id, k.prefix, k.role, k.collections, k.revoked_at is not None, k.name))


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str) -> None:
    server = target(ctx)
    if server.url:
        remote.keys_revoke(server, key_id)
        typer.echo(f"revoked {key_id}")
        return
    from core.keys import revoke_key

    try:
        revoke_key(_db(), key_id)
    except RagError as exc:
        fail(exc)
    typer.echo(f"revoked {key_id}")
