"""Entry point of the ``exchange`` command.

Commands that talk to the gateway share one connection layer (``cli/connect.py``): the same
``--profile``/``--url``/``--client-id``/``--client-secret``/``--output`` options and
``EXCHANGE_*`` variables everywhere, tokens handled by the SDK, errors as one clear line.
"""

from __future__ import annotations

import os

import typer

from cli import (
    audit_cmd,
    backup_cmd,
    consent_cmd,
    data_cmd,
    federation_cmd,
    identity_cmd,
    import_cmd,
    kafka_cmd,
    keys_cmd,
    node_cmd,
    profile_cmd,
    schema_cmd,
    up_cmd,
)
from exchange import __version__
from exchange.home import PRIVATE_UMASK

app = typer.Typer(
    help="exchange: cross-department data exchange bus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(up_cmd.up)
app.command("backup")(backup_cmd.backup)
app.command("restore")(backup_cmd.restore)
app.command("login")(profile_cmd.login)
app.command("logout")(profile_cmd.logout)
app.command("whoami")(profile_cmd.whoami)
app.command("status")(profile_cmd.status)
app.add_typer(profile_cmd.profiles_app, name="profiles")
app.add_typer(identity_cmd.departments_app, name="departments")
app.add_typer(identity_cmd.clients_app, name="clients")
app.add_typer(identity_cmd.people_app, name="people")
app.add_typer(schema_cmd.app, name="schema")
app.add_typer(data_cmd.topics_app, name="topics")
app.command("publish")(data_cmd.publish_command)
app.add_typer(data_cmd.subscribe_app, name="subscribe")
app.add_typer(data_cmd.subscribe_app, name="subscriptions", hidden=True)
app.command("tail")(data_cmd.tail_command)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(keys_cmd.kms_app, name="kms")
app.add_typer(kafka_cmd.app, name="kafka")
app.add_typer(node_cmd.app, name="node")
app.add_typer(federation_cmd.app, name="federation")
app.command("import")(import_cmd.import_)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"exchange {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
    """Whatever a command writes (databases, keys, exports) is the owner's alone."""
    os.umask(PRIVATE_UMASK)


for _name, _group in consent_cmd.GROUPS:  # catalog, agreements, consents
    app.add_typer(_group, name=_name)

if __name__ == "__main__":
    app()
