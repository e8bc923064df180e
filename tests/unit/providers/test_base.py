"""Canonical records, content hashing and per-record quarantine."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import Field

from integrations.providers.base import (
    CanonicalSession,
    UpstreamModel,
    content_hash,
    from_unix,
    map_codes,
    map_named_hypnogram,
    parse_records,
    raw_id,
    stages_to_bytes,
)

START = datetime(2025, 1, 15, 22, 0, tzinfo=timezone.utc)


def night(**overrides):
    values = dict(
        provider="asleep",
        upstream_id="s1",
        upstream_user_id="u1",
        start=START,
        end=START + timedelta(minutes=2),
        timezone="Europe/Berlin",
        epoch_seconds=30,
        stages=stages_to_bytes([0, 5, 3, 4]),
        upstream_updated_at=None,
        upstream_stats={"sleep_index": 50},
    )
    values.update(overrides)
    return CanonicalSession(**values)


def test_it_hashes_the_same_content_the_same_way():
    assert content_hash(night()) == content_hash(night())
    assert content_hash(night()).startswith("v1:")


@pytest.mark.parametrize(
    "change",
    [
        {"stages": stages_to_bytes([0, 5, 3, 0])},
        {"upstream_stats": {"sleep_index": 51}},
        {"start": START - timedelta(seconds=30)},
        {"timezone": "UTC"},
    ],
)
def test_it_changes_the_hash_when_content_changes(change):
    assert content_hash(replace(night(), **change)) != content_hash(night())


def test_it_ignores_the_upstream_timestamp_in_the_hash():
    bumped = replace(night(), upstream_updated_at=START + timedelta(days=1))
    assert content_hash(bumped) == content_hash(night())


def test_it_does_not_depend_on_stats_key_order():
    a = night(upstream_stats={"a": 1, "b": 2})
    b = night(upstream_stats={"b": 2, "a": 1})
    assert content_hash(a) == content_hash(b)


@pytest.mark.parametrize(
    "bad",
    [
        {"start": datetime(2025, 1, 15, 22, 0)},  # naive
        {"end": START},  # not after start
        {"epoch_seconds": 0},
        {"stages": b""},
        {"stages": bytes([7])},  # not a canonical code
        {"timezone": "Mars/Olympus"},
        {"provider": "fitbit"},
        {"upstream_stats": {"x": float("nan")}},  # not JSON-safe
        {"upstream_stats": {"x": object()}},
    ],
)
def test_it_refuses_a_session_that_breaks_an_invariant(bad):
    with pytest.raises((ValueError, TypeError)):
        night(**bad)


def test_it_maps_codes_and_refuses_unknown_ones():
    assert list(map_codes([1, 0, -1], {-1: -1, 0: 0, 1: 5}, what="x")) == [5, 0, 255]
    with pytest.raises(ValueError, match=r"unknown codes \[2\]"):
        map_codes([0, 2], {0: 0}, what="x")


def test_it_maps_named_classes_including_rk_stage_4():
    stages = map_named_hypnogram(
        [0, 1, 2, 3, 4, 5], {"0": "Wake", "1": "n1", "2": "N2", "3": "N3", "4": "N4", "5": "R"}
    )
    assert CanonicalSession.stage_array(night(stages=stages)).tolist() == [0, 1, 2, 3, 3, 4]


class Item(UpstreamModel):
    id: str
    value: int = Field(ge=0)


def test_it_quarantines_a_bad_record_with_a_reason_and_keeps_the_rest():
    raw = [
        {"id": "a", "value": 1},
        {"id": "b", "value": "secret-text"},
        {"id": "c", "value": 3, "extra": True},
        17,
    ]
    good, bad = parse_records(
        raw, Item.model_validate, provider="beddit", id_of=lambda r: raw_id(r, "id")
    )
    assert [g.id for g in good] == ["a", "c"]
    assert [(q.upstream_id, q.payload) for q in bad] == [("b", raw[1]), (None, 17)]
    assert "value" in bad[0].reason and "secret-text" not in bad[0].reason


def test_it_lets_a_programming_error_surface():
    def boom(raw):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        parse_records([{}], boom, provider="beddit", id_of=lambda r: None)


@pytest.mark.parametrize("seconds", [-1.0, 6.77680361916768e16, float("inf"), float("nan")])
def test_it_refuses_a_unix_timestamp_out_of_range(seconds):
    with pytest.raises(ValueError):
        from_unix(seconds)
