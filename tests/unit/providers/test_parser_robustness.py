"""Upstream parsers raise only the project's error family, whatever JSON arrives (cf. T28)."""

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.providers import asleep, beddit, grand_challenge, usleep
from integrations.providers.base import CanonicalSession
from integrations.providers.errors import UpstreamError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.just([])
)

START = datetime(2024, 1, 1, tzinfo=UTC)
T0 = 1471271700.0

VALID = {
    "asleep": {
        "timezone": "UTC",
        "session": {
            "id": "s",
            "state": "COMPLETE",
            "start_time": "2025-01-15T02:50:29+00:00",
            "end_time": "2025-01-15T02:52:29+00:00",
            "created_timezone": "UTC",
            "sleep_stages": [0, 1, 2, 3],
        },
        "stat": {"sleep_index": 50, "sleep_efficiency": 0.5},
    },
    "beddit": {
        "date": "2016-08-16",
        "timezone": "Asia/Tokyo",
        "start_timestamp": T0,
        "end_timestamp": T0 + 120,
        "updated": T0 + 200,
        "properties": {"total_sleep_score": 40},
        "time_value_tracks": {"sleep_stages": {"items": [[T0, 87], [T0 + 30, 83]]}},
    },
    "usleep": {"hypnogram": [0, 1, 2], "classes": {"0": "W", "1": "N1", "2": "N2"}},
    "grand_challenge": {"hypnogram": [0, 4], "epoch_seconds": 30},
}

PARSERS = {
    "asleep": lambda p: asleep.parse_report(p, user_id="u"),
    "beddit": lambda p: beddit.parse_sleep(p, user_id="u"),
    "usleep": lambda p: usleep.parse_hypnogram(
        p, upstream_id="s", upstream_user_id="u", start=START, timezone="UTC"
    ),
    "grand_challenge": lambda p: grand_challenge.hypnogram_from_output(
        p, upstream_id="j", upstream_user_id="u", start=START, timezone="UTC"
    ),
}


def mutate(value, path, new):
    """A copy of ``value`` with the node at ``path`` (list of keys/indices) replaced."""
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict) and value:
        key = list(value)[head % len(value)]
        return {**value, key: mutate(value[key], rest, new)}
    if isinstance(value, list) and value:
        index = head % len(value)
        return value[:index] + [mutate(value[index], rest, new)] + value[index + 1 :]
    return new


def check(parse, payload):
    try:
        result = parse(payload)
    except UpstreamError:
        return
    assert result is None or isinstance(result, CanonicalSession)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_it_parses_the_valid_sample(name):
    assert isinstance(PARSERS[name](VALID[name]), CanonicalSession)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_values)
def test_it_raises_only_the_error_family_on_arbitrary_json(name, payload):
    check(PARSERS[name], payload)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=4), new=leaf)
def test_it_raises_only_the_error_family_on_a_mutated_valid_payload(name, path, new):
    check(PARSERS[name], mutate(VALID[name], path, new))
