"""Bulk upserts on PostgreSQL: one array parameter per column, ``INSERT ... SELECT FROM unnest``.

Why not ``bulk_create``: it prepares every cell through its field and binds one parameter
per cell, client-side (Django's psycopg cursors interpolate them into the SQL text), which
for the sleep store costs more CPU than computing the metrics. Here a column of N values
is one parameter, sent in binary: numeric, date and time columns are built from numpy as
PostgreSQL's own binary array layout (``binary_array``, no Python loop per value), other
columns as Python lists that psycopg adapts. Values reach the table exactly as the ORM
would store them (floats bit for bit).

Statements run on a plain psycopg cursor over Django's connection, so in the caller's
transaction (as ``analytics.selectors`` does for its binary reads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from django.db import connection
from psycopg import Cursor, postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

# Element type -> big-endian numpy type of its binary form (PostgreSQL's *_send functions).
_ELEMENT_DTYPES = {"float8": ">f8", "int8": ">i8", "bool": "u1", "date": ">i4", "time": ">i8"}
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's date and timestamp epoch, in days since 1970
_MICROSECONDS_PER_SECOND = 1_000_000


class BinaryArray(bytes):
    """A one-dimensional PostgreSQL array in binary wire format; ``element`` names its type."""

    element: str


def _array_dumper(element: str) -> type[Dumper]:
    class ArrayDumper(Dumper):
        format = Format.BINARY
        oid = postgres.types[element].array_oid

        def dump(self, obj):
            return obj

    return ArrayDumper


_ARRAY_CLASSES = {
    element: type(f"BinaryArray_{element}", (BinaryArray,), {"element": element})
    for element in _ELEMENT_DTYPES
}
_DUMPERS = {element: _array_dumper(element) for element in _ELEMENT_DTYPES}


def binary_array(element: str, values, missing=None) -> BinaryArray:
    """``values`` as a PostgreSQL ``element[]`` (array_send layout); NULL where ``missing``.

    element: ``float8``, ``int8``, ``bool``, ``date`` (values: datetime64[D] or dates),
    ``time`` (values: seconds past midnight, whole microseconds). ``missing``: optional
    boolean mask of NULLs (for floats, pass ``np.isnan(values)``).
    """
    if element == "date":
        values = np.asarray(values, dtype="datetime64[D]").astype(np.int64) - _PG_EPOCH_DAYS
    elif element == "time":
        seconds = np.asarray(values, dtype=float)
        seconds = np.where(np.isnan(seconds), 0.0, seconds)
        values = np.rint(seconds * _MICROSECONDS_PER_SECOND).astype(np.int64)
    values = np.asarray(values)
    size = values.size
    width = np.dtype(_ELEMENT_DTYPES[element]).itemsize
    items = np.empty(size, dtype=[("length", ">i4"), ("value", _ELEMENT_DTYPES[element])])
    items["length"] = width
    items["value"] = values
    null = np.zeros(size, dtype=bool) if missing is None else np.asarray(missing, dtype=bool)
    has_null = bool(null.any())
    if has_null:
        # A NULL element is its length (-1) alone: drop the value bytes of those rows.
        items["length"][null] = -1
        keep = np.ones((size, 4 + width), dtype=bool)
        keep[null, 4:] = False
        raw = np.frombuffer(items.tobytes(), dtype=np.uint8).reshape(size, 4 + width)
        body = raw[keep].tobytes()
    else:
        body = items.tobytes()
    # ndim, has-null flag, element oid, then (size, lower bound) of the one dimension.
    header = np.array([1, int(has_null), postgres.types[element].oid, size, 1], dtype=">i4")
    return _ARRAY_CLASSES[element](header.tobytes() + body)


def upsert(
    model,
    *,
    arrays: Mapping[str, tuple[str, object]],
    constants: Mapping[str, object] | None = None,
    expressions: Mapping[str, str] | None = None,
    conflict: Sequence[str],
    update: Sequence[str],
    returning: Sequence[str] = (),
) -> list[tuple]:
    """``INSERT INTO model ... SELECT FROM unnest(arrays) ON CONFLICT (conflict) DO UPDATE``.

    arrays: field name -> (PostgreSQL element type, a ``BinaryArray`` or a list of values),
    all of one length; constants: field name -> one value for every row; expressions:
    field name -> SQL evaluated per row (e.g. ``gen_random_uuid()``); conflict: the unique
    fields; update: fields set from the new row on conflict; returning: fields of each
    written row to return (inserted or updated rows, in no guaranteed order).
    """
    meta, quote = model._meta, connection.ops.quote_name
    constants, expressions = constants or {}, expressions or {}

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    unnested = [column(name) for name in arrays]
    targets = unnested + [column(name) for name in [*constants, *expressions]]
    selected = [f"u.{c}" for c in unnested] + ["%s"] * len(constants) + list(expressions.values())
    # %b: binary parameters (psycopg's text array format escapes every element in Python).
    sources = [f"%b::{element}[]" for element, _ in arrays.values()]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(targets)}) "
        f"SELECT {', '.join(selected)} "
        f"FROM unnest({', '.join(sources)}) AS u({', '.join(unnested)}) "
        f"ON CONFLICT ({', '.join(column(n) for n in conflict)}) DO UPDATE SET "
        + ", ".join(f"{column(n)} = EXCLUDED.{column(n)}" for n in update)
    )
    if returning:
        sql += f" RETURNING {', '.join(column(n) for n in returning)}"
    params = [*constants.values(), *[values for _, values in arrays.values()]]
    connection.ensure_connection()
    # Django's cursors bind client-side (values interpolated into the SQL text, no binary
    # parameters): a plain psycopg cursor on the same connection (same transaction) binds
    # server-side. Not prepared: a prepared statement would not survive a transaction-
    # pooling proxy, and planning this statement is cheap. Errors are wrapped as Django's
    # (django.db.OperationalError, ...), as on Django's cursors, so the callers' handling of a
    # dropped connection (the sync engine retries, T11) and Django's own bookkeeping
    # (errors_occurred, so a broken connection is closed) apply to this statement too.
    with connection.wrap_database_errors, Cursor(connection.connection) as cursor:
        for element, dumper in _DUMPERS.items():
            cursor.adapters.register_dumper(_ARRAY_CLASSES[element], dumper)
        cursor.execute(sql, params, prepare=False)
        return cursor.fetchall() if returning else []
