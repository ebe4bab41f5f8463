"""``exchange import SOURCE --topic <dept>.<dataset>``: a legacy file or database, published.

Reads the source, proposes a schema with sensitive fields classified, registers it, creates
the topic if needed, then publishes through the gateway in resumable batches (``ingest``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from cli.connect import Session, connected, stderr_console, stdout_console, write_json
from ingest.api import GatewayApi
from ingest.errors import SourceError
from ingest.mapping import CLASSIFICATIONS, Mapping
from ingest.prepare import plan, ready
from ingest.run import Importer, Summary
from ingest.sources import open_source


@connected()
def import_(
    cx: Session,
    source: str = typer.Argument(
        ..., help="CSV/TSV, .jsonl, .xlsx file, or a SQLAlchemy URL (with --table/--sql-query)"
    ),
    topic: str = typer.Option(..., "--topic", help="<department>.<dataset>"),
    sheet: str | None = typer.Option(None, "--sheet", help="Sheet of an .xlsx workbook"),
    table: str | None = typer.Option(None, "--table", help="SQL table to import"),
    sql_query: str | None = typer.Option(None, "--sql-query", help="SQL query to import"),
    incremental_key: str | None = typer.Option(
        None, "--incremental-key", help="SQL: ever-growing unique column; sync rows beyond it"
    ),
    watermark_column: str | None = typer.Option(
        None, "--watermark-column", help="SQL: an updated_at column; sync rows changed since"
    ),
    mapping_file: Path | None = typer.Option(
        None, "--mapping", help="Mapping JSON: used if it exists, else the proposal is saved there"
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept the proposed mapping"),
    reject_file: Path | None = typer.Option(
        None, "--reject-file", help="Rejected rows, CSV: number, reason (SOURCE.TOPIC.rejects.csv)"
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Checkpoint file (default: SOURCE.TOPIC.import.json)"
    ),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, max=5000),
    workers: int = typer.Option(4, "--workers", min=1, max=16, help="Batches in flight"),
    key_column: str | None = typer.Option(None, "--key-column", help="Column used as record key"),
    share_type: str = typer.Option(
        "conditional", "--share-type", help="For a new topic: unconditional|conditional|not_shared"
    ),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding (else detected)"),
    restart: bool = typer.Option(False, "--restart", help="Ignore the checkpoint; start over"),
) -> None:
    """Import a CSV/TSV, JSON Lines, Excel sheet or SQL table through the gateway."""
    if incremental_key and watermark_column:
        raise typer.BadParameter("use one of --incremental-key or --watermark-column")
    order = incremental_key or watermark_column
    src = open_source(
        source, sheet=sheet, table=table, query=sql_query, order_column=order, encoding=encoding
    )
    api = GatewayApi(cx.client())
    p = plan(api, src, topic, mapping_file=mapping_file, key_column=key_column or incremental_key)
    mapping = _confirm(p.mapping, mapping_file, yes or p.saved, cx.json)
    if mapping is None:
        raise typer.Exit(2)
    if mapping_file is not None and not mapping_file.exists():
        mapping.save(mapping_file)
    schema_id = ready(api, p, mapping, share_type)
    # Named after source and topic: one file imported into two topics keeps two checkpoints.
    base = Path(topic) if "://" in source else Path(f"{source}.{topic}")
    importer = Importer(
        api,
        src,
        mapping,
        schema_id,
        checkpoint=checkpoint or base.with_name(base.name + ".import.json"),
        reject_file=reject_file or base.with_name(base.name + ".rejects.csv"),
        batch_size=batch_size,
        workers=workers,
        restart=restart,
    )
    try:
        summary = _run(importer, cx.json)
    except KeyboardInterrupt:
        cx.fail(
            "interrupted",
            f"what was confirmed is in {importer.checkpoint_path}: rerun the same command to "
            "continue without duplicates",
            130,
        )
    _report(summary, cx.json)


def _table(m: Mapping) -> Table:
    t = Table(title=f"proposed schema for {m.topic}", title_justify="left")
    for col in ("column", "field", "type", "null", "classification", "subject", "detected"):
        t.add_column(col)
    styles = {"secret": "bold red", "sensitive": "yellow", "public": "green"}
    for f in m.fields:
        ftype = f"decimal({f.precision},{f.scale})" if f.type == "decimal" else f.type
        style = styles.get(f.classification, "")
        t.add_row(
            f.column,
            f.name,
            ftype,
            "yes" if f.nullable else "",
            f"[{style}]{f.classification}[/]" if style else f.classification,
            "yes" if f.data_subject else "",
            f.detected or "",
        )
    return t


def _confirm(m: Mapping, path: Path | None, yes: bool, quiet: bool) -> Mapping | None:
    """Show the proposal; ``--yes`` or an existing mapping file accepts it, a terminal asks
    (and takes edits), anything else saves it for editing and stops."""
    err = stderr_console()
    if not quiet:
        err.print(_table(m))
    if yes or (path is not None and path.exists()):
        return m
    if not sys.stdin.isatty():
        where = f"edit {path} and rerun with --mapping {path}" if path else "pass --mapping FILE"
        if path is not None:
            m.save(path)
        err.print(f"[bold]not confirmed:[/] rerun with --yes to accept it, or {where}")
        return None
    while True:
        answer = typer.prompt(
            "accept? y / n / FIELD=CLASSIFICATION / FIELD+subject / FIELD-subject", default="y"
        ).strip()
        if answer.lower() in ("y", "yes"):
            return m
        if answer.lower() in ("n", "no"):
            return None
        try:
            m = _edit(m, answer)
        except SourceError as exc:
            err.print(f"[red]{exc.message}[/]")
            continue
        err.print(_table(m))


def _edit(m: Mapping, answer: str) -> Mapping:
    if "=" in answer:
        name, _, value = (part.strip() for part in answer.partition("="))
        if value not in CLASSIFICATIONS:
            raise SourceError(f"classification must be one of {', '.join(CLASSIFICATIONS)}")
        return m.with_field(name, classification=value)
    if answer.endswith(("+subject", "-subject")):
        return m.with_field(answer[:-8].strip(), data_subject=answer.endswith("+subject"))
    raise SourceError("say y, n, FIELD=CLASSIFICATION or FIELD+subject")


def _run(importer: Importer, quiet: bool) -> Summary:
    if quiet or not sys.stderr.isatty():
        return importer.run()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        TextColumn("{task.fields[published]:,} published · {task.fields[rejected]:,} rejected"),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("import", total=None, published=0, rejected=0)

        def show(s: Summary) -> None:
            bar.update(task, completed=s.read, published=s.published, rejected=s.rejected)

        importer.on_progress = show
        return importer.run()


def _report(s: Summary, as_json: bool) -> None:
    if as_json:
        write_json(s.to_json())
        return
    console = stdout_console()
    if s.already_done:
        console.print(
            f"{s.source} was already imported into {s.topic} (checkpoint {s.checkpoint}); "
            "pass --restart to import it again",
            highlight=False,
        )
        return
    t = Table(title=f"import into {s.topic}", title_justify="left", show_header=False)
    t.add_column()
    t.add_column(justify="right")
    if s.resumed_after:
        t.add_row("resumed after rows", f"{s.resumed_after:,}")
    t.add_row("rows read", f"{s.read:,}")
    t.add_row("published", f"{s.published:,}")
    t.add_row("rejected", f"{s.rejected:,}")
    t.add_row("time", f"{s.seconds:.1f} s")
    t.add_row("rate", f"{s.rate:,.0f} rows/s")
    console.print(t)
    if s.rejected:
        console.print(f"rejected rows (row number, reason): {s.reject_file}", highlight=False)
