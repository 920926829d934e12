"""``steward keys create|list|revoke``: the gateway's client keys, kept hashed in the Steward home."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from steward.cli.common import HomeOption, begin, console, errors, fail

app = typer.Typer(name="keys", help="Client keys of the gateway: create, list, revoke (docs/security.md).",
                  no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Who holds the key; recorded as the actor of what it does.")],
    role: Annotated[list[str] | None, typer.Option(
        "--role", help="viewer, operator or admin (repeatable); none: the key may only predict.")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="Days until the key stops working.")] = 90.0,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="A key that never expires.")] = False,
    home: HomeOption = None,
) -> None:
    """Create a key and print it once: only its hash is kept."""
    from steward.serving.auth import KeyRing, KeysFileError, now_utc, parse_roles

    path = begin(home).settings.keys_file
    now = now_utc()
    try:
        ring = KeyRing.load(path)
        expires = None if no_expiry or expires_in_days is None else now + timedelta(days=expires_in_days)
        key, plaintext = ring.create(name, parse_roles(role or []), now, expires)
        ring.save(path)
    except KeysFileError as error:
        fail(str(error))
    errors.print(f"created key {key.key_id} for [bold]{key.name}[/] "
                 f"({', '.join(sorted(key.roles)) or 'predict only'}; "
                 f"{'expires ' + key.expires_at.isoformat() if key.expires_at else 'never expires'}). "
                 "Store it now: it is not shown again. Gateways read it within a second.")
    console.print(plaintext, soft_wrap=True, highlight=False)


@app.command("list")
def list_keys(home: HomeOption = None) -> None:
    """Every key with its roles and state (never the secret)."""
    from steward.serving.auth import KeyRing, KeysFileError, now_utc

    path = begin(home).settings.keys_file
    try:
        ring = KeyRing.load(path)
    except KeysFileError as error:
        fail(str(error))
    if not ring.configured:
        console.print(f"no keys in {path}: gateways of this home take predict and feedback from anyone")
        return
    now = now_utc()
    table = Table("id", "name", "roles", "state", "created", "expires")
    for key in ring.keys.values():
        row = key.describe(now)
        table.add_row(row["key_id"], row["name"], ", ".join(row["roles"]) or "predict only", row["state"],
                      row["created_at"][:19], (row["expires_at"] or "never")[:19])
    console.print(table)


@app.command()
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id, or the name of its active key.")],
    home: HomeOption = None,
) -> None:
    """Revoke a key; gateways refuse it within a second."""
    from steward.serving.auth import KeyRing, KeysFileError, now_utc

    path = begin(home).settings.keys_file
    try:
        ring = KeyRing.load(path)
        revoked = ring.revoke(key, now_utc())
        ring.save(path)
    except KeysFileError as error:
        fail(str(error))
    console.print(f"revoked key {revoked.key_id} ({revoked.name})")
