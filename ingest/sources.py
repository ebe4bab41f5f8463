"""Where rows come from: CSV/TSV, JSON Lines, ``.xlsx`` sheets and SQL, all streamed.

Each source yields ``Row``s in a stable order; ``ordinal`` counts data rows from 1 (what a
checkpoint skips on resume), ``number`` is where a person finds the row (the line of a CSV or
JSON Lines file, the sheet row, the position in a SQL result). A row that cannot be read
(undecodable bytes, wrong number of values, bad JSON) comes with ``problem`` set and no values:
it is rejected, the others go on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ingest.errors import SourceError

SAMPLE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Row:
    ordinal: int
    number: int
    values: Sequence[Any] | None
    problem: str | None = None


class Source(Protocol):
    description: str
    columns: list[str]
    # a column whose value orders rows for incremental sync, or None
    order_column: str | None

    def fingerprint(self) -> str: ...

    def rows(self, after: int = 0, watermark: Any = None) -> Iterator[Row]:
        """Rows with ``ordinal > after`` (files) or ``order_column > watermark`` (SQL)."""
        ...


# -- encodings ---------------------------------------------------------------------------
def detect_encoding(sample: bytes, complete: bool) -> str:
    """A Python codec name for ``sample`` (the file's first bytes; ``complete`` if all of it).

    BOMs first (UTF-8, UTF-16), UTF-16 without BOM by its zero bytes, then a strict try of
    UTF-8 and GB18030 (a superset of GBK and GB2312), then UTF-8 with a few broken sequences
    (their rows are rejected), then charset-normalizer's guess.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = sample[:4096]
    if b"\0" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        for codec, ok in (("utf-16-le", even == 0), ("utf-16-be", odd == 0)):
            if ok and _decodes(sample[: len(sample) // 2 * 2], codec, complete):
                return codec
        raise SourceError("the file is binary, not text: export it as CSV first")
    for codec in ("utf-8", "gb18030"):
        if _decodes(sample, codec, complete):
            return codec
    if _mostly_utf8(sample):
        return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise SourceError(
            "cannot tell the file's text encoding (tried UTF-8, UTF-16, GBK/GB18030): "
            "save it as UTF-8"
        )
    return str(best.encoding)


def _mostly_utf8(sample: bytes) -> bool:
    """UTF-8 with at most a few broken sequences (those rows are rejected): text in another
    encoding read as UTF-8 breaks at nearly every non-ASCII character."""
    text = sample.decode("utf-8", errors="replace")
    broken = text.count("\ufffd") - sample.count("\ufffd".encode())
    return broken <= max(4, len(sample) // 1000)


def _decodes(sample: bytes, codec: str, complete: bool) -> bool:
    decoder = codecs.getincrementaldecoder(codec)("strict")
    try:
        decoder.decode(sample, final=complete)  # an incomplete last character is fine
    except UnicodeDecodeError:
        return False
    return True


def _broken(values: Sequence[str]) -> bool:
    """Undecodable bytes survive as lone surrogates (the ``surrogateescape`` handler)."""
    return any(any("\udc80" <= ch <= "\udcff" for ch in v) for v in values)


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
    return f"{path.stat().st_size}:{h.hexdigest()}"


def _read_sample(path: Path) -> tuple[bytes, bool]:
    try:
        with path.open("rb") as f:
            sample = f.read(SAMPLE_BYTES + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    if not sample.strip():
        raise SourceError(f"{path} is empty: nothing to import")
    return sample[:SAMPLE_BYTES], len(sample) <= SAMPLE_BYTES


# -- CSV / TSV ---------------------------------------------------------------------------
class CsvSource:
    order_column: str | None = None

    def __init__(
        self, path: Path, *, delimiter: str | None = None, encoding: str | None = None
    ) -> None:
        self.path = path
        sample, complete = _read_sample(path)
        self.encoding = encoding or detect_encoding(sample, complete)
        text = sample.decode(self.encoding, errors="surrogateescape")
        self.delimiter = delimiter or self._sniff(text)
        with self._open() as f:
            header = next(csv.reader(f, delimiter=self.delimiter), None)
        if not header or not any(h.strip() for h in header):
            raise SourceError(f"{path} has no header row")
        if _broken(header):
            raise SourceError(f"{path}: the header is not valid {self.encoding}; pass --encoding")
        self.columns = [h.strip() for h in header]
        self.description = f"{path.name} ({self.encoding}, {_DELIMS.get(self.delimiter, 'csv')})"

    def _sniff(self, text: str) -> str:
        if self.path.suffix.lower() in (".tsv", ".tab"):
            return "\t"
        first = text.splitlines()[0] if text else ""
        counts = {d: first.count(d) for d in ",\t;|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","

    def _open(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(
            self.path.open("rb"), encoding=self.encoding, errors="surrogateescape", newline=""
        )

    def fingerprint(self) -> str:
        return _file_fingerprint(self.path)

    def rows(self, after: int = 0, watermark: Any = None) -> Iterator[Row]:
        width = len(self.columns)
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            next(reader, None)
            ordinal = 0
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    ordinal += 1
                    yield Row(ordinal, reader.line_num, None, f"malformed CSV: {exc}")
                    continue
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                ordinal += 1
                if ordinal <= after:
                    continue
                line = reader.line_num
                if _broken(values):
                    yield Row(ordinal, line, None, f"bytes that are not valid {self.encoding}")
                elif len(values) != width:
                    yield Row(ordinal, line, None, f"{len(values)} values, the header has {width}")
                else:
                    yield Row(ordinal, line, values)


_DELIMS = {",": "csv", "\t": "tsv", ";": "semicolon-separated", "|": "pipe-separated"}


# -- JSON Lines --------------------------------------------------------------------------
class JsonLinesSource:
    order_column: str | None = None

    def __init__(self, path: Path, *, sample_lines: int = 1000) -> None:
        self.path = path
        sample, complete = _read_sample(path)
        self.encoding = detect_encoding(sample, complete)
        columns: dict[str, None] = {}
        with self._open() as f:
            for i, line in enumerate(f):
                if i >= sample_lines:
                    break
                try:
                    obj = json.loads(line) if line.strip() else None
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    columns.update(dict.fromkeys(obj))
        if not columns:
            raise SourceError(f"{path} has no JSON objects in its first {sample_lines} lines")
        self.columns = list(columns)
        self.description = f"{path.name} (JSON Lines, {self.encoding})"

    def _open(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(
            self.path.open("rb"), encoding=self.encoding, errors="surrogateescape"
        )

    def fingerprint(self) -> str:
        return _file_fingerprint(self.path)

    def rows(self, after: int = 0, watermark: Any = None) -> Iterator[Row]:
        known = set(self.columns)
        ordinal = 0
        with self._open() as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                ordinal += 1
                if ordinal <= after:
                    continue
                if _broken([line]):
                    yield Row(ordinal, number, None, f"bytes that are not valid {self.encoding}")
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    yield Row(ordinal, number, None, f"invalid JSON: {exc.args[0]}")
                    continue
                if not isinstance(obj, dict):
                    yield Row(ordinal, number, None, "not a JSON object")
                elif extra := sorted(set(obj) - known):
                    yield Row(ordinal, number, None, f"unknown field {extra[0]!r}")
                else:
                    yield Row(ordinal, number, [obj.get(c) for c in self.columns])


# -- Excel -------------------------------------------------------------------------------
class XlsxSource:
    order_column: str | None = None

    def __init__(self, path: Path, sheet: str | None = None) -> None:
        self.path = path
        self.sheet = sheet
        with self._sheet() as rows:
            header = next(rows, None)
        while header and header[-1] is None:
            header = header[:-1]
        if not header:
            raise SourceError(f"sheet {self.sheet!r} of {path} has no header row")
        self.columns = ["" if h is None else str(h).strip() for h in header]
        self.description = f"{path.name} [{self.sheet}]"

    def _sheet(self) -> _SheetRows:
        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            wb = load_workbook(self.path, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
            raise SourceError(f"{self.path} is not a readable .xlsx workbook: {exc}") from None
        names = list(wb.sheetnames)
        name = self.sheet or names[0]
        if name not in names:
            wb.close()
            raise SourceError(f"{self.path} has no sheet {name!r}; its sheets: {', '.join(names)}")
        self.sheet = name
        return _SheetRows(wb, name)

    def fingerprint(self) -> str:
        return f"{_file_fingerprint(self.path)}:{self.sheet}"

    def rows(self, after: int = 0, watermark: Any = None) -> Iterator[Row]:
        width = len(self.columns)
        ordinal = 0
        with self._sheet() as rows:
            next(rows, None)
            for number, values in enumerate(rows, start=2):
                if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                    continue
                ordinal += 1
                if ordinal <= after:
                    continue
                cells = list(values[:width]) + [None] * (width - len(values))
                if any(v is not None for v in values[width:]):
                    yield Row(ordinal, number, None, f"values beyond the header's {width} columns")
                else:
                    yield Row(ordinal, number, cells)


class _SheetRows:
    """A read-only worksheet's rows as values, closing the workbook at the end."""

    def __init__(self, wb: Any, name: str) -> None:
        self.wb = wb
        self.it: Iterator[tuple[Any, ...]] = wb[name].iter_rows(values_only=True)

    def __enter__(self) -> Iterator[tuple[Any, ...]]:
        return self.it

    def __exit__(self, *exc: object) -> None:
        self.wb.close()


# -- SQL ---------------------------------------------------------------------------------
class SqlSource:
    """A table or query through a SQLAlchemy URL, streamed; ``order_column`` makes it
    incremental: rows ordered by it, only those beyond the last watermark."""

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        query: str | None = None,
        order_column: str | None = None,
    ) -> None:
        from sqlalchemy import create_engine, exc, text
        from sqlalchemy.engine import make_url

        if (table is None) == (query is None):
            raise SourceError("a SQL source needs exactly one of --table or --sql-query")
        try:
            parsed = make_url(url)
            self.engine = create_engine(parsed)
        except (exc.ArgumentError, exc.NoSuchModuleError, ValueError) as e:
            raise SourceError(f"bad SQLAlchemy URL: {e}") from None
        except ModuleNotFoundError as e:
            raise SourceError(f"no database driver {e.name!r} installed for this URL") from None
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.table, self.query, self.order_column = table, query, order_column
        self._text = text
        try:
            with self.engine.connect() as conn:
                result = conn.execute(self._select(None, limit=0, ordered=False))
                self.columns = list(result.keys())
        except exc.SQLAlchemyError as e:
            raise SourceError(f"{self.safe_url}: {_sql_error(e)}") from None
        if order_column is not None and order_column not in self.columns:
            raise SourceError(f"no column {order_column!r} in the SQL source")
        self.tiebreak = self._tiebreak()
        what = f"table {table}" if table else "query"
        self.description = f"{self.safe_url} {what}"

    def _tiebreak(self) -> list[str]:
        """Columns ordering rows that share a watermark value, so a rerun reads them in the
        same order (a resent batch must have the same bytes, hence the same idempotency key;
        MySQL returns ties in any order): the table's primary key, else every column."""
        from sqlalchemy import exc, inspect

        if self.order_column is None:
            return []
        key: list[str] = []
        if self.table is not None:
            schema, _, name = self.table.rpartition(".")
            try:
                pk = inspect(self.engine).get_pk_constraint(name, schema=schema or None)
                key = [c for c in pk.get("constrained_columns") or [] if c in self.columns]
            except exc.SQLAlchemyError:
                key = []
        return [c for c in (key or self.columns) if c != self.order_column]

    def _select(self, watermark: Any, limit: int | None = None, ordered: bool = True) -> Any:
        from sqlalchemy import column, literal_column, select, table

        if self.table is not None:
            schema, _, name = self.table.rpartition(".")
            src: Any = table(name, schema=schema or None)
        else:
            src = self._text(self.query or "").columns().subquery("src")
        stmt: Any = select(literal_column("*")).select_from(src)
        if self.order_column is not None and ordered:
            col: Any = column(self.order_column)
            if watermark is not None:
                stmt = stmt.where(col > watermark)
            stmt = stmt.order_by(col, *(column(c) for c in self.tiebreak))
        return stmt.limit(limit) if limit is not None else stmt

    def fingerprint(self) -> str:
        what = self.table or self.query or ""
        return hashlib.sha256(f"{self.safe_url}\0{what}".encode()).hexdigest()

    def rows(self, after: int = 0, watermark: Any = None) -> Iterator[Row]:
        from sqlalchemy import exc

        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=1000).execute(
                    self._select(watermark)
                )
                for ordinal, values in enumerate(result, start=1):
                    if ordinal > after:
                        yield Row(ordinal, ordinal, tuple(values))
        except exc.SQLAlchemyError as e:
            raise SourceError(f"{self.safe_url}: {_sql_error(e)}") from None


def _sql_error(e: Exception) -> str:
    orig = getattr(e, "orig", None)
    return str(orig or e).splitlines()[0]


def open_source(
    source: str,
    *,
    sheet: str | None = None,
    table: str | None = None,
    query: str | None = None,
    order_column: str | None = None,
    encoding: str | None = None,
) -> Source:
    """The source a command line names: a SQLAlchemy URL, or a file by its extension."""
    if "://" in source:
        return SqlSource(source, table=table, query=query, order_column=order_column)
    if table or query:
        raise SourceError("--table/--sql-query need a SQLAlchemy URL as SOURCE")
    if order_column:
        raise SourceError("incremental mode (--incremental-key/--watermark-column) needs SQL")
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"no such file: {source}")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return XlsxSource(path, sheet)
    if sheet:
        raise SourceError("--sheet is for .xlsx workbooks")
    if suffix in (".jsonl", ".ndjson"):
        return JsonLinesSource(path)
    if suffix == ".xls":
        raise SourceError("old .xls workbooks are not supported: save the sheet as .xlsx or CSV")
    return CsvSource(path, encoding=encoding)
