"""analytics.pg_bulk.binary_array: PostgreSQL's binary array layout built from numpy columns.

The oracle is psycopg's own binary dumper of the same values as a Python list (what the
driver would send for ``%b`` with a list): byte for byte equal, so the server reads the
very values the ORM would have stored. The upserts themselves run against the database
in test_store_sessions.py (on PostgreSQL when the suite runs there).
"""

from datetime import date, time

import numpy as np
import pytest
from psycopg.adapt import PyFormat, Transformer

from analytics.pg_bulk import binary_array


def _psycopg_binary(values: list) -> bytes:
    return bytes(Transformer().get_dumper(values, PyFormat.BINARY).dump(values))


class BinaryArrayTests:
    @pytest.mark.parametrize(
        ("element", "values", "column", "missing"),
        [
            ("float8", [1.5, None, -0.0, 5e-324, 1 / 3], [1.5, np.nan, -0.0, 5e-324, 1 / 3], True),
            ("float8", [480.0, 0.0], [480.0, 0.0], True),  # no NULL: the has-null flag stays 0
            ("int8", [2**40, -3, 0], [2**40, -3, 0], False),
            ("bool", [True, False, True], [True, False, True], False),
            ("date", [date(2026, 3, 29), date(1999, 12, 31), date(2000, 1, 1)],
             np.array([date(2026, 3, 29), date(1999, 12, 31), date(2000, 1, 1)], dtype=object), False),
            ("time", [time(23, 59, 59), None, time(0, 0), time(7, 5, 30)], [86399.0, np.nan, 0.0, 25530.0], True),
        ],
    )
    def test_it_lays_out_an_array_as_psycopg_sends_the_list(self, element, values, column, missing):
        column = np.asarray(column)
        got = binary_array(element, column, np.isnan(column) if missing else None)
        assert bytes(got) == _psycopg_binary(values)
        assert got.element == element

    def test_it_takes_dates_as_datetime64_days_too(self):
        days = np.array(["1970-01-01", "2026-10-25"], dtype="datetime64[D]")
        assert bytes(binary_array("date", days)) == _psycopg_binary([date(1970, 1, 1), date(2026, 10, 25)])


@pytest.mark.django_db
def test_a_failing_upsert_raises_djangos_error_like_the_orm():
    """Callers catch django.db errors (the sync engine retries on OperationalError, T11)."""
    from django.db import IntegrityError, connection

    from analytics.models import SleepSession
    from analytics.pg_bulk import upsert

    if connection.vendor != "postgresql":
        pytest.skip("the binary upsert runs on PostgreSQL only")
    with pytest.raises(IntegrityError):  # django.db's, not psycopg's
        upsert(
            SleepSession,
            arrays={"participant": ("int8", binary_array("int8", np.array([10**9])))},
            constants={"organization": 10**9},
            conflict=["participant", "provider", "upstream_id"],
            update=["content_hash"],
        )
