"""Reading CSV and Parquet files of flows with errors that name the file, line and column.

Private: the public face is :mod:`threattune.sources.flows`. pandas reads whole files for
training (it reports the line of a malformed row); pyarrow streams large files in batches for
scoring, with flat memory.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from threattune.errors import DataError, SchemaMismatch

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv", ".txt", ".tsv", ".parquet", ".pq"}
_OTHER_DELIMITERS = [";", "\t", "|"]
_MISSING = {"nan", "na", "n/a", "null", "none", "inf", "-inf", "infinity", "-infinity"}


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is read as Parquet (by its suffix)."""
    return path.suffix.lower() in {".parquet", ".pq"}


def check_readable(path: Path) -> None:
    """Raise a :class:`DataError` when ``path`` is missing, a folder or empty."""
    if not path.exists():
        raise DataError(
            "file not found",
            path=path,
            fix="check the path; relative paths are taken from the current folder",
        )
    if path.is_dir():
        raise DataError(
            "expected a file, found a folder", path=path, fix="name a CSV or Parquet file"
        )
    if path.stat().st_size == 0:
        raise DataError(
            "the file is empty",
            path=path,
            expected="a header line and at least one row of flows",
            found="0 bytes",
        )


def first_line(path: Path) -> str:
    """The first line of a text file, without its line ending."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        return handle.readline().rstrip("\r\n")


def check_delimiter(path: Path, header: str, delimiter: str) -> None:
    """Raise when the header looks split by another delimiter than ``delimiter``."""
    if delimiter in header:
        return
    for other in _OTHER_DELIMITERS:
        if other != delimiter and header.count(other) >= 2:
            shown = "\\t" if other == "\t" else other
            raise DataError(
                f"the header has no '{delimiter}' but {header.count(other)} '{shown}'",
                path=path,
                line=1,
                expected=f"fields separated by '{delimiter}'",
                found=f"fields separated by '{shown}'",
                fix=f"pass --delimiter '{shown}' or export the file with commas",
            )


def locate_bad_row(path: Path, delimiter: str, n_fields: int, has_header: bool) -> str:
    """Find the first line whose field count differs from ``n_fields`` (slow; error path only)."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if number == 1 and has_header:
                continue
            if fields and len(fields) != n_fields:
                return f"line {number} has {len(fields)} fields, the header has {n_fields}"
    return "a row could not be parsed"


def read_csv_frame(
    path: Path,
    *,
    names: Sequence[str] | None = None,
    delimiter: str = ",",
) -> pd.DataFrame:
    """Read a whole delimited file; ``names`` for files without a header row."""
    check_readable(path)
    if names is None:
        check_delimiter(path, first_line(path), delimiter)
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            header=None if names is not None else "infer",
            names=list(names) if names is not None else None,
            skipinitialspace=True,
            low_memory=False,
        )
    except pd.errors.ParserError as exc:
        raise DataError(
            f"the file is not a well-formed table: {str(exc).strip()}",
            path=path,
            expected=f"{len(names)} fields on every line" if names else "the same fields per line",
            fix="check the delimiter and quoting, or remove the malformed line",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError("the file has no rows", path=path) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            "the file is not UTF-8 text", path=path, fix="convert it to UTF-8 or Parquet"
        ) from exc

    frame.columns = [str(c).strip() for c in frame.columns]
    if names is not None and frame.shape[1] != len(names):
        raise DataError("wrong number of fields", path=path, expected=str(len(names)))
    if frame.empty:
        raise DataError("the file has a header but no rows", path=path, line=2)
    return frame


def read_table(path: Path, *, delimiter: str = ",") -> pd.DataFrame:
    """Read a whole CSV or Parquet file of flows with a header row."""
    check_readable(path)
    if is_parquet(path):
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Parquet file: {exc}", path=path) from exc
        frame.columns = [str(c).strip() for c in frame.columns]
        if frame.empty:
            raise DataError("the Parquet file has no rows", path=path)
        return frame
    return read_csv_frame(path, delimiter=delimiter)


def iter_batches(
    path: Path,
    *,
    names: Sequence[str] | None = None,
    delimiter: str = ",",
    batch_rows: int = 65_536,
    numeric_columns: Sequence[str] = (),
    categorical_columns: Sequence[str] = (),
) -> Iterator[pd.DataFrame]:
    """Stream a CSV or Parquet file as DataFrames of at most ``batch_rows`` rows.

    Memory stays flat however large the file: only one batch is held at a time. CSV columns
    named in ``numeric_columns`` are read as numbers (empty cells and Infinity allowed), every
    other column as text, so a type never depends on what the first rows happen to hold;
    ``categorical_columns`` come as pandas categoricals (dictionary-encoded while reading).
    """
    check_readable(path)
    if is_parquet(path):
        yield from _iter_parquet(path, batch_rows)
        return

    if names is None:
        header = first_line(path)
        check_delimiter(path, header, delimiter)
        columns = [c.strip() for c in next(csv.reader([header], delimiter=delimiter))]
    else:
        columns = list(names)
    numeric = set(numeric_columns)
    categorical = set(categorical_columns)
    dictionary = pa.dictionary(pa.int32(), pa.string())
    read_options = pacsv.ReadOptions(
        column_names=list(names) if names is not None else None,
        block_size=min(1 << 22, max(1 << 16, batch_rows * 256)),
    )
    convert_options = pacsv.ConvertOptions(
        column_types={
            c: pa.float64() if c in numeric else dictionary if c in categorical else pa.string()
            for c in columns
        },
        strings_can_be_null=True,
    )
    try:
        reader = pacsv.open_csv(
            path,
            read_options=read_options,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=convert_options,
        )
        pending: pa.Table | None = None
        for block in reader:
            table = pa.Table.from_batches([block])
            pending = table if pending is None else pa.concat_tables([pending, table])
            while pending.num_rows >= batch_rows:
                yield _to_frame(pending.slice(0, batch_rows))
                pending = pending.slice(batch_rows)
        if pending is not None and pending.num_rows:
            yield _to_frame(pending)
    except pa.ArrowInvalid as exc:
        raise _malformed(path, exc, columns, delimiter, has_header=names is None) from exc


def _malformed(
    path: Path, exc: Exception, columns: list[str], delimiter: str, *, has_header: bool
) -> DataError:
    """A :class:`DataError` naming the line (and column) pyarrow could not read."""
    message = str(exc).splitlines()[0]
    column = re.search(r"column #(\d+)", message)
    if column is not None and int(column.group(1)) < len(columns):
        name = columns[int(column.group(1))]
        line, value = _first_non_number(path, int(column.group(1)), delimiter, has_header)
        return SchemaMismatch(
            "a numeric feature column holds text",
            path=path,
            line=line,
            field=name,
            expected="a number (or an empty cell)",
            found=repr(value) if value is not None else message[:300],
            fix="fix the upstream export; this column was numeric when the model was trained",
        )
    return DataError(
        f"the file is not a well-formed table: "
        f"{locate_bad_row(path, delimiter, len(columns), has_header)}",
        path=path,
        expected=f"{len(columns)} fields on every line",
        found=message[:300],
        fix="check the delimiter and quoting, or remove the malformed line",
    )


def _first_non_number(
    path: Path, position: int, delimiter: str, has_header: bool
) -> tuple[int | None, str | None]:
    """The first line whose field at ``position`` is not a number (slow; error path only)."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if (number == 1 and has_header) or len(fields) <= position:
                continue
            value = fields[position].strip()
            if value and value.lower() not in _MISSING:
                try:
                    float(value)
                except ValueError:
                    return number, value
    return None, None


def _to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _iter_parquet(path: Path, batch_rows: int) -> Iterator[pd.DataFrame]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", path=path) from exc
    if parquet.metadata.num_rows == 0:
        raise DataError("the Parquet file has no rows", path=path)
    for batch in parquet.iter_batches(batch_size=batch_rows):
        yield _to_frame(pa.Table.from_batches([batch]))
