"""Entry point of the ``exchange`` command."""

from __future__ import annotations

import os

import typer

from cli import audit_cmd, consent_cmd, kafka_cmd, keys_cmd, node_cmd, schema_cmd, up_cmd
from exchange.home import PRIVATE_UMASK

app = typer.Typer(
    help="exchange: cross-department data exchange bus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka_cmd.app, name="kafka")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(schema_cmd.app, name="schema")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(keys_cmd.kms_app, name="kms")
app.add_typer(node_cmd.app, name="node")
app.command("up")(up_cmd.up)


@app.callback()
def _private_files() -> None:
    """Whatever a command writes (databases, keys, exports) is the owner's alone."""
    os.umask(PRIVATE_UMASK)


for _name, _group in consent_cmd.GROUPS:  # catalog, agreements, consents
    app.add_typer(_group, name=_name)

if __name__ == "__main__":
    app()
