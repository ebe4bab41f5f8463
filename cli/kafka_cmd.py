"""``exchange kafka start|stop|status``: manage the embedded broker on its own."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOption, console, guarded, settings_for

app = typer.Typer(help="Manage the embedded single-node Kafka broker.", no_args_is_help=True)


@app.command()
@guarded
def start(
    home: Path | None = HomeOption,
    port: int | None = typer.Option(None, help="Broker port (default: a free one)"),
) -> None:
    """Start the broker in the background and print its bootstrap address."""
    from exchange.kafka.broker import LocalBroker

    s = settings_for(home)
    broker = LocalBroker(s.resolved_home, broker_port=port)
    st = broker.start()
    console.print(f"bootstrap={st.bootstrap}", highlight=False)
    console.print(f"client.properties={broker.properties_file}", highlight=False)


@app.command()
@guarded
def stop(home: Path | None = HomeOption) -> None:
    """Stop the broker of this home (clean shutdown)."""
    from exchange.kafka.broker import LocalBroker

    s = settings_for(home)
    stopped = LocalBroker(s.resolved_home).stop()
    console.print("stopped" if stopped else "not running")


@app.command()
@guarded
def status(home: Path | None = HomeOption) -> None:
    """Print ``bootstrap=127.0.0.1:PORT`` and the client properties file; exit 1 if not running.

    Point Kafka's Java tools at the file, e.g.
    ``kafka-console-consumer.sh --bootstrap-server ADDR --consumer.config FILE --topic T``."""
    from exchange.kafka.broker import LocalBroker
    from exchange.kafka.security import write_properties_file

    s = settings_for(home)
    broker = LocalBroker(s.resolved_home)
    st = broker.state()
    if st is None:
        console.print("not running")
        raise typer.Exit(1)
    props = write_properties_file(s.resolved_home, broker.security())  # 0600, holds the password
    console.print(f"bootstrap={st.bootstrap} pid={st.pid} version={st.version}", highlight=False)
    console.print(f"client.properties={props}", highlight=False)


@app.command()
@guarded
def fetch() -> None:
    """Fetch the broker and MirrorMaker 2 jars into the cache (done by ``make install``)."""
    from exchange.kafka.jars import ensure_jars, ensure_mirror_jars

    console.print(f"kafka jars in {ensure_jars()}", highlight=False)
    console.print(f"mirrormaker jars in {ensure_mirror_jars()}", highlight=False)
