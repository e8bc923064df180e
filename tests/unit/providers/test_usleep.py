"""U-Sleep client: the usleep-api 0.1.3 protocol, shared/upstreams.md §2."""

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from integrations.providers.base import ScoringState
from integrations.providers.errors import (
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from integrations.providers.usleep import (
    ConfigurationOptions,
    FileInfo,
    USleepClient,
    infer_channel_groups,
    predict_form,
)

BASE = "http://127.0.0.1:8765"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.e30.sig"
S = "/api/v1/sleep_stager/rec01"
START = datetime(2024, 3, 1, 22, 30, tzinfo=timezone.utc)
CLASSES = {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM"}


@pytest.fixture
def mock():
    with respx.mock(base_url=BASE, assert_all_called=False) as m:
        yield m


@pytest.fixture
def client():
    with USleepClient(TOKEN, base_url=BASE + "/", allow_private=True) as c:
        yield c


def test_it_pings_with_the_bearer_token(client, mock):
    route = mock.get("/api/v1/info/ping").respond(200, json={})
    client.ping()
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_it_reads_a_refused_ping_as_auth_failed_without_the_token(client, mock):
    mock.get("/api/v1/info/ping").respond(401, json={"error": "Invalid token"})
    with pytest.raises(UpstreamAuthFailed) as excinfo:
        client.ping()
    assert TOKEN not in str(excinfo.value)


def test_it_creates_a_session_by_setting_a_known_model(client, mock):
    mock.get("/api/v1/info/model_names").respond(
        200, json={"models": ["U-Sleep v1.0", "U-Sleep v2.0"]}
    )
    route = mock.post(f"{S}/set_model").respond(200, json={"result": "ok"})
    client.create_session("rec01", model="U-Sleep v2.0")
    assert parse_qs(route.calls.last.request.content.decode()) == {"model": ["U-Sleep v2.0"]}


def test_it_refuses_a_model_the_server_does_not_offer(client, mock):
    mock.get("/api/v1/info/model_names").respond(200, json={"models": ["U-Sleep v1.0"]})
    set_model = mock.post(f"{S}/set_model")
    with pytest.raises(UpstreamRejected):
        client.create_session("rec01", model="U-Sleep v9")
    assert not set_model.called


def test_it_refuses_a_session_name_that_would_change_the_path(client):
    with pytest.raises(ValueError):
        client.delete_session("../info")


def test_it_uploads_the_edf_as_multipart_field_psg(client, mock):
    route = mock.post(f"{S}/file").respond(200, json={"result": "uploaded"})
    client.upload_psg("rec01", b"0       EDF-BYTES", filename="night.edf")
    request = route.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="PSG"; filename="night.edf"' in request.content
    assert b"EDF-BYTES" in request.content


def test_it_reads_a_failed_upload_at_once(client, mock):
    mock.post(f"{S}/file").respond(413, json={"error": "File too large"})
    with pytest.raises(UpstreamRejected):
        client.upload_psg("rec01", b"x")


def test_it_chooses_channel_groups_like_the_bindings(client, mock):
    mock.get(f"{S}/file").respond(
        200,
        json={
            "channels": ["C3-M2", "C4-M1", "EOG(L)", "EMG", "F3-M2"],
            "inferred_channel_types": ["EEG", "EEG", "EOG", "EMG", "EEG"],
        },
    )
    mock.get(f"{S}/configuration_options").respond(
        200, json={"required_channels": [["EEG"], ["EOG"]]}
    )
    mock.get("/api/v1/info/config/MAX_CHANNEL_COMBINATIONS").respond(
        200, json={"MAX_CHANNEL_COMBINATIONS": 2}
    )
    assert client.choose_channel_groups("rec01") == [("C3-M2", "EOG(L)"), ("C4-M1", "EOG(L)")]


def test_it_refuses_a_file_without_matching_channels(client, mock):
    mock.get(f"{S}/file").respond(
        200, json={"channels": ["EMG"], "inferred_channel_types": ["EMG"]}
    )
    mock.get(f"{S}/configuration_options").respond(
        200, json={"required_channels": [["EEG"], ["EOG"]]}
    )
    mock.get("/api/v1/info/config/MAX_CHANNEL_COMBINATIONS").respond(
        200, json={"MAX_CHANNEL_COMBINATIONS": 24}
    )
    with pytest.raises(UpstreamRejected):
        client.choose_channel_groups("rec01")


def test_it_refuses_file_info_with_lists_of_different_length(client, mock):
    mock.get(f"{S}/file").respond(
        200, json={"channels": ["C3", "EOG"], "inferred_channel_types": ["EEG"]}
    )
    with pytest.raises(UpstreamBadPayload):
        client.file_info("rec01")


def test_it_builds_the_predict_form_over_every_channel_of_every_group():
    form = predict_form([["C3-M2", "EOG"], ["C4-M1", "EOG"]], 3840)
    assert form == {
        "data_per_prediction": "3840",
        "channels-0": "C3-M2",
        "channel_group_idx-0": "0",
        "channels-1": "EOG",
        "channel_group_idx-1": "0",
        "channels-2": "C4-M1",
        "channel_group_idx-2": "1",
        "channels-3": "EOG",
        "channel_group_idx-3": "1",
    }


def test_it_posts_predict_as_a_form(client, mock):
    route = mock.post(f"{S}/predict").respond(200, json={"result": "started"})
    client.predict("rec01", [("C3-M2", "EOG")])
    assert parse_qs(route.calls.last.request.content.decode()) == {
        "data_per_prediction": ["3840"],
        "channels-0": ["C3-M2"],
        "channel_group_idx-0": ["0"],
        "channels-1": ["EOG"],
        "channel_group_idx-1": ["0"],
    }


def test_it_infers_groups_with_string_requirements_and_cuts_to_the_max():
    info = FileInfo(channels=["a", "b", "c"], inferred_channel_types=["EEG", "EEG", "EOG"])
    options = ConfigurationOptions(required_channels=["EEG", ["EOG", "EEG"]])
    assert infer_channel_groups(info, options, 10) == [
        ("a", "a"),
        ("a", "b"),
        ("a", "c"),
        ("b", "a"),
        ("b", "b"),
        ("b", "c"),
    ]
    assert len(infer_channel_groups(info, options, 2)) == 2


class TestPoll:
    def test_it_reports_completed_from_the_status_label(self, client, mock):
        mock.get(f"{S}/prediction_status").respond(200, json={"label": "Completed"})
        stream = mock.get(f"{S}/prediction_log_stream")
        poll = client.poll("rec01")
        assert poll.state is ScoringState.COMPLETED and poll.label == "Completed"
        assert not stream.called

    def test_it_reports_pending_while_the_log_is_not_finished(self, client, mock):
        mock.get(f"{S}/prediction_status").respond(200, json={"label": "Running"})
        mock.get(f"{S}/prediction_log_stream").respond(
            200, json={"log": "epoch 3/10\n", "finished": False}
        )
        assert client.poll("rec01").state is ScoringState.PENDING

    def test_it_reports_failed_when_finished_without_completed(self, client, mock):
        mock.get(f"{S}/prediction_status").respond(200, json={"label": "Running"})
        mock.get(f"{S}/prediction_log_stream").respond(200, json={"log": "", "finished": True})
        poll = client.poll("rec01")
        assert poll.state is ScoringState.FAILED

    def test_it_reports_completed_when_it_finished_between_two_reads(self, client, mock):
        mock.get(f"{S}/prediction_status").mock(
            side_effect=[
                httpx.Response(200, json={"label": "Running"}),
                httpx.Response(200, json={"label": "completed"}),
            ]
        )
        mock.get(f"{S}/prediction_log_stream").respond(200, json={"log": "done", "finished": True})
        assert client.poll("rec01").state is ScoringState.COMPLETED

    def test_it_reports_an_explicit_failure_label(self, client, mock):
        mock.get(f"{S}/prediction_status").respond(200, json={"label": "Failed"})
        assert client.poll("rec01").state is ScoringState.FAILED


class TestHypnogram:
    def test_it_maps_classes_to_canonical_codes(self, client, mock):
        mock.get(f"{S}/hypnogram").respond(
            200, json={"hypnogram": [0, 1, 2, 3, 4, 2], "classes": CLASSES}
        )
        night = client.fetch_hypnogram(
            "rec01", start=START, timezone="Europe/Copenhagen", upstream_user_id="org-1"
        )
        assert night.provider == "usleep" and night.upstream_id == "rec01"
        assert night.stage_array().tolist() == [0, 1, 2, 3, 4, 2]
        assert night.start == START and night.end == START + timedelta(seconds=180)
        assert night.epoch_seconds == 30 and night.timezone == "Europe/Copenhagen"

    def test_it_reads_a_naive_edf_start_in_the_participant_timezone(self, client, mock):
        mock.get(f"{S}/hypnogram").respond(200, json={"hypnogram": [0], "classes": CLASSES})
        night = client.fetch_hypnogram(
            "rec01",
            start=datetime(2024, 3, 1, 23, 30),
            timezone="Europe/Copenhagen",
            upstream_user_id="u",
        )
        assert night.start == START

    def test_it_uses_the_class_map_rather_than_assuming_the_order(self, client, mock):
        shuffled = {"0": "REM", "1": "W", "2": "N3", "3": "N2", "4": "N1"}
        mock.get(f"{S}/hypnogram").respond(
            200, json={"hypnogram": [0, 1, 2, 3, 4], "classes": shuffled}
        )
        night = client.fetch_hypnogram("rec01", start=START, timezone="UTC", upstream_user_id="u")
        assert night.stage_array().tolist() == [4, 0, 3, 2, 1]

    def test_it_derives_the_epoch_from_data_per_prediction(self, client, mock):
        mock.get(f"{S}/hypnogram").respond(200, json={"hypnogram": [0, 0], "classes": CLASSES})
        night = client.fetch_hypnogram(
            "rec01", start=START, timezone="UTC", upstream_user_id="u", data_per_prediction=128 * 15
        )
        assert night.epoch_seconds == 15

    @pytest.mark.parametrize(
        "body",
        [
            {"hypnogram": [0, 5], "classes": CLASSES},  # index outside the class map
            {"hypnogram": [0], "classes": {"0": "Deep"}},  # unknown name
            {"hypnogram": [], "classes": CLASSES},
            {"classes": CLASSES},
        ],
    )
    def test_it_refuses_a_bad_hypnogram(self, client, mock, body):
        mock.get(f"{S}/hypnogram").respond(200, json=body)
        with pytest.raises(UpstreamBadPayload) as excinfo:
            client.fetch_hypnogram("rec01", start=START, timezone="UTC", upstream_user_id="u")
        assert excinfo.value.payload == body

    def test_it_accepts_unknown_extra_keys(self, client, mock):
        mock.get(f"{S}/hypnogram").respond(
            200, json={"hypnogram": [0], "classes": CLASSES, "model": "U-Sleep v1.0"}
        )
        client.fetch_hypnogram("rec01", start=START, timezone="UTC", upstream_user_id="u")


def test_it_deletes_the_session(client, mock):
    route = mock.delete(S).respond(200, json={"result": "deleted"})
    client.delete_session("rec01")
    assert route.called


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, UpstreamAuthFailed),
        (404, UpstreamNotFound),
        (500, UpstreamUnavailable),
        (502, UpstreamUnavailable),
        (503, UpstreamUnavailable),
    ],
)
def test_it_maps_error_statuses(client, mock, status, error):
    mock.get(f"{S}/prediction_status").respond(status, json={"error": "x"})
    with pytest.raises(error):
        client.poll("rec01")


def test_it_reads_429_with_an_http_date(client, mock):
    mock.get(f"{S}/prediction_status").respond(
        429, headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}
    )
    with pytest.raises(UpstreamRateLimited) as excinfo:
        client.poll("rec01")
    assert excinfo.value.retry_after == 0


def test_it_reads_a_timeout_and_a_non_json_body_as_unavailable(client, mock):
    mock.get(f"{S}/prediction_status").mock(
        side_effect=[httpx.ReadTimeout("x"), httpx.Response(200, text="<html>")]
    )
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.poll("rec01")
