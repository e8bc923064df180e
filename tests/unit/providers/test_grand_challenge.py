"""Grand Challenge client: the gcapi 0.15.1 protocol, shared/upstreams.md §3."""

import json
from datetime import datetime, timedelta, timezone

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
from integrations.providers.grand_challenge import GrandChallengeClient, JobInput

API = "https://gc.test/api/v1/"
S3 = "https://s3.gc-storage.test"
TOKEN = "a" * 64
START = datetime(2024, 3, 1, 22, 0, tzinfo=timezone.utc)
JOB = "8a8f3b0e-2f7c-4ad0-9c3e-6a1c3f2d9b11"


def ci(slug, super_kind="File", kind="Anything", pk=1, relative_path=None):
    return {
        "title": slug.title(),
        "description": None,
        "slug": slug,
        "kind": kind,
        "pk": pk,
        "default_value": None,
        "super_kind": super_kind,
        "relative_path": relative_path or f"{slug}.json",
        "overlay_segments": None,
        "look_up_table": None,
    }


ALGORITHM = {
    "api_url": f"{API}algorithms/0d11fc7f-1c8a-4d2b-9d49-7a2b2c41b7f3/",
    "url": "https://gc.test/algorithms/sleep-stager/",
    "description": None,
    "pk": "0d11fc7f-1c8a-4d2b-9d49-7a2b2c41b7f3",
    "title": "Sleep stager",
    "logo": "https://gc.test/logo.png",
    "slug": "sleep-stager",
    "average_duration": None,
    "interfaces": [
        {
            "inputs": [ci("psg-edf", pk=1), ci("model-name", "Value", "String", pk=2)],
            "outputs": [ci("hypnogram", "Value", "Anything", pk=3)],
        }
    ],
}


def page(results, count=None, next_url=None):
    return {
        "count": len(results) if count is None else count,
        "next": next_url,
        "previous": None,
        "results": results,
    }


def upload(status="Initialized"):
    return {
        "pk": "f4c1e0de-0000-4000-8000-000000000001",
        "created": "2024-03-01T22:00:00Z",
        "filename": "night.edf",
        "key": "uploads/7/f4c1e0de",
        "s3_upload_id": "s3-upload-xyz",
        "status": status,
        "api_url": f"{API}uploads/f4c1e0de-0000-4000-8000-000000000001/",
    }


UP = "uploads/f4c1e0de-0000-4000-8000-000000000001/s3-upload-xyz/"


def job(status="Succeeded", outputs=None):
    return {
        "pk": JOB,
        "url": f"https://gc.test/algorithms/jobs/{JOB}/",
        "api_url": f"{API}algorithms/jobs/{JOB}/",
        "algorithm_image": f"{API}algorithms/images/1/",
        "inputs": [],
        "outputs": outputs or [],
        "status": status,
        "hanging_protocol": None,
        "optional_hanging_protocols": [],
        "view_content": {},
        "exec_duration": "P0DT00H01M02S",
        "invoke_duration": None,
        "algorithm": ALGORITHM["api_url"],
    }


@pytest.fixture
def mock():
    with respx.mock(assert_all_called=False) as m:
        yield m


@pytest.fixture
def client():
    with GrandChallengeClient(f"Bearer {TOKEN}", base_url=API, chunk_size=4) as c:
        yield c


def test_it_passes_the_version_gate_unauthenticated(client, mock):
    route = mock.get(f"{API}gcapi/").respond(
        200, json={"latest_version": "0.16.0", "lowest_supported_version": "0.13.0"}
    )
    assert client.check_version().latest_version == "0.16.0"
    assert "authorization" not in route.calls.last.request.headers


def test_it_stops_at_the_version_gate_when_our_protocol_is_too_old(client, mock):
    mock.get(f"{API}gcapi/").respond(
        200, json={"latest_version": "1.0.0", "lowest_supported_version": "0.16"}
    )
    with pytest.raises(UpstreamRejected) as excinfo:
        client.check_version()
    assert excinfo.value.permanent


def test_it_refuses_plain_http_unless_private_is_allowed():
    with pytest.raises(ValueError):
        GrandChallengeClient(TOKEN, base_url="http://gc.test/api/v1/")
    GrandChallengeClient(
        TOKEN, base_url="http://127.0.0.1:9000/api/v1/", allow_private=True
    ).close()


def test_it_gets_an_algorithm_by_slug_with_the_bearer_header(client, mock):
    route = mock.get(f"{API}algorithms/").respond(200, json=page([ALGORITHM]))
    algorithm = client.get_algorithm("sleep-stager")
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"BEARER {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert dict(request.url.params) == {"slug": "sleep-stager", "offset": "0", "limit": "100"}
    assert algorithm.interfaces[0].inputs[0].slug == "psg-edf"


def test_it_reads_no_match_as_not_found_and_two_as_bad_payload(client, mock):
    mock.get(f"{API}algorithms/").mock(
        side_effect=[
            httpx.Response(200, json=page([])),
            httpx.Response(200, json=page([ALGORITHM, ALGORITHM])),
        ]
    )
    with pytest.raises(UpstreamNotFound):
        client.get_algorithm("nope")
    with pytest.raises(UpstreamBadPayload):
        client.get_algorithm("twice")


def test_it_gets_an_interface_by_slug(client, mock):
    mock.get(f"{API}components/interfaces/").respond(200, json=page([ci("psg-edf")]))
    assert client.get_interface("psg-edf").super_kind == "File"


class TestPagination:
    def test_it_asks_again_after_a_full_page_and_stops_on_an_empty_one(self, client, mock):
        route = mock.get(f"{API}algorithms/jobs/").mock(
            side_effect=[
                httpx.Response(
                    200,
                    json=page(
                        [job()] * 2, count=2, next_url=f"{API}algorithms/jobs/?limit=2&offset=2"
                    ),
                ),
                httpx.Response(200, json=page([], count=2)),
            ]
        )
        pages = list(client.iter_pages("algorithms/jobs/", page_size=2))
        assert [len(p) for p in pages] == [2]
        assert [c.request.url.params["offset"] for c in route.calls] == ["0", "2"]

    def test_it_stops_after_a_short_page(self, client, mock):
        route = mock.get(f"{API}algorithms/jobs/").respond(200, json=page([job()], count=1))
        assert [len(p) for p in client.iter_pages("algorithms/jobs/", page_size=2)] == [1]
        assert route.call_count == 1

    def test_it_quarantines_a_malformed_job_among_good_ones(self, client, mock):
        broken = job()
        del broken["status"]
        mock.get(f"{API}algorithms/jobs/").respond(
            200, json=page([job(), broken, {**job(), "new_key": 1}])
        )
        (result,) = list(client.iter_jobs())
        assert len(result.items) == 2
        (bad,) = result.quarantined
        assert bad.upstream_id == JOB and "status" in bad.reason


class TestUpload:
    def test_it_uploads_in_parts_reading_each_etag(self, client, mock):
        create = mock.post(f"{API}uploads/").respond(201, json=upload())
        presign = mock.patch(f"{API}{UP}generate-presigned-urls/").mock(
            side_effect=lambda request: httpx.Response(
                200,
                json={
                    **upload(),
                    "presigned_urls": {
                        str(n): f"{S3}/part{n}?sig=x"
                        for n in json.loads(request.content)["part_numbers"]
                    },
                },
            )
        )
        puts = mock.put(url__startswith=f"{S3}/part").mock(
            side_effect=lambda request: httpx.Response(
                200, headers={"ETag": f'"etag-{request.url.path[-1]}"'}
            )
        )
        complete = mock.patch(f"{API}{UP}complete-multipart-upload/").respond(
            200, json=upload("Completed")
        )
        result = client.upload_file("/tmp/night.edf", b"0123456789")  # 3 chunks of 4 bytes
        assert result.status == "Completed"
        assert json.loads(create.calls.last.request.content) == {"filename": "night.edf"}
        assert json.loads(presign.calls.last.request.content) == {"part_numbers": [1, 2, 3, 4, 5]}
        assert [c.request.content for c in puts.calls] == [b"0123", b"4567", b"89"]
        assert all("authorization" not in c.request.headers for c in puts.calls)
        assert json.loads(complete.calls.last.request.content) == {
            "parts": [
                {"ETag": '"etag-1"', "PartNumber": 1},
                {"ETag": '"etag-2"', "PartNumber": 2},
                {"ETag": '"etag-3"', "PartNumber": 3},
            ]
        }

    def test_it_aborts_the_upload_when_a_part_has_no_etag(self, client, mock):
        mock.post(f"{API}uploads/").respond(201, json=upload())
        mock.patch(f"{API}{UP}generate-presigned-urls/").respond(
            200, json={**upload(), "presigned_urls": {str(n): f"{S3}/part{n}" for n in range(1, 6)}}
        )
        mock.put(url__startswith=S3).respond(200)
        abort = mock.patch(f"{API}{UP}abort-multipart-upload/").respond(200, json=upload("Aborted"))
        with pytest.raises(UpstreamBadPayload, match="ETag"):
            client.upload_file("night.edf", b"0123")
        assert abort.called

    def test_it_aborts_the_upload_when_storage_fails(self, client, mock):
        mock.post(f"{API}uploads/").respond(201, json=upload())
        mock.patch(f"{API}{UP}generate-presigned-urls/").respond(
            200, json={**upload(), "presigned_urls": {str(n): f"{S3}/part{n}" for n in range(1, 6)}}
        )
        mock.put(url__startswith=S3).respond(503)
        abort = mock.patch(f"{API}{UP}abort-multipart-upload/").respond(200, json=upload("Aborted"))
        with pytest.raises(UpstreamUnavailable):
            client.upload_file("night.edf", b"0123")
        assert abort.called

    def test_it_reads_too_many_uploads_as_rate_limited(self, client, mock):
        mock.post(f"{API}uploads/").respond(
            400,
            json={
                "non_field_errors": ["You have created too many uploads. Please try again later."]
            },
        )
        with pytest.raises(UpstreamRateLimited):
            client.upload_file("night.edf", b"0123")


class TestJobs:
    def test_it_submits_a_psg_with_all_eight_input_keys(self, client, mock):
        mock.get(f"{API}algorithms/").respond(200, json=page([ALGORITHM]))
        mock.get(f"{API}components/interfaces/").respond(200, json=page([ci("psg-edf")]))
        mock.post(f"{API}uploads/").respond(201, json=upload())
        mock.patch(f"{API}{UP}generate-presigned-urls/").respond(
            200, json={**upload(), "presigned_urls": {str(n): f"{S3}/part{n}" for n in range(1, 6)}}
        )
        mock.put(url__startswith=S3).respond(200, headers={"ETag": '"e1"'})
        mock.patch(f"{API}{UP}complete-multipart-upload/").respond(200, json=upload("Completed"))
        create = mock.post(f"{API}algorithms/jobs/").respond(
            201, json={"pk": JOB, "inputs": [], "status": "Validating inputs"}
        )
        posted = client.submit_psg(
            "sleep-stager", "night.edf", b"0123", values={"model-name": "U-Sleep v2.0"}
        )
        assert posted.pk == JOB and posted.status == "Validating inputs"
        body = json.loads(create.calls.last.request.content)
        assert body["algorithm"] == ALGORITHM["api_url"]
        keys = {
            "interface",
            "value",
            "file",
            "image",
            "upload_session",
            "user_upload",
            "user_uploads",
            "image_name",
        }
        assert all(set(i) == keys for i in body["inputs"])
        by_slug = {i["interface"]: i for i in body["inputs"]}
        assert (
            by_slug["psg-edf"]["user_upload"] == upload()["api_url"]
            and by_slug["psg-edf"]["value"] is None
        )
        assert by_slug["model-name"]["value"] == "U-Sleep v2.0"

    def test_it_refuses_inputs_that_match_no_interface(self, client, mock):
        mock.get(f"{API}algorithms/").respond(200, json=page([ALGORITHM]))
        algorithm = client.get_algorithm("sleep-stager")
        with pytest.raises(UpstreamRejected):
            client.start_job(algorithm, [JobInput("psg-edf", user_upload="u")])

    def test_it_refuses_an_input_with_two_sources(self):
        with pytest.raises(ValueError):
            JobInput("psg-edf", value=1, user_upload="u").to_json()

    @pytest.mark.parametrize(
        ("message", "error"),
        [
            (
                "You have too many active jobs, please try again after they have completed",
                UpstreamRateLimited,
            ),
            ("You have run out of algorithm credits", UpstreamRejected),
            ("Algorithm image is not ready to be used", UpstreamUnavailable),
            (
                "A result for these inputs with the current image and model already exists.",
                UpstreamRejected,
            ),
        ],
    )
    def test_it_maps_job_creation_errors(self, client, mock, message, error):
        mock.get(f"{API}algorithms/").respond(200, json=page([ALGORITHM]))
        mock.post(f"{API}algorithms/jobs/").respond(400, json={"non_field_errors": [message]})
        algorithm = client.get_algorithm("sleep-stager")
        with pytest.raises(error):
            client.start_job(
                algorithm, [JobInput("psg-edf", user_upload="u"), JobInput("model-name", value="x")]
            )

    @pytest.mark.parametrize(
        ("status", "state"),
        [
            ("Validating inputs", ScoringState.PENDING),
            ("Executing Algorithm", ScoringState.PENDING),
            ("Some Future Label", ScoringState.PENDING),
            ("Succeeded", ScoringState.COMPLETED),
            ("Failed", ScoringState.FAILED),
            ("Cancelled", ScoringState.FAILED),
        ],
    )
    def test_it_polls_a_job_status(self, client, mock, status, state):
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job(status))
        poll = client.poll_job(JOB)
        assert poll.state is state and poll.label == status

    def test_it_reads_a_hypnogram_value_output(self, client, mock):
        output = {
            "interface": ci("hypnogram", "Value"),
            "value": {
                "hypnogram": [0, 1, 2, 3, 4],
                "classes": {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM"},
            },
            "file": None,
            "image": None,
            "pk": 9,
        }
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job(outputs=[output]))
        night = client.job_hypnogram(
            client.get_job(JOB),
            output_slug="hypnogram",
            start=START,
            timezone="Europe/Amsterdam",
            upstream_user_id="org-1",
        )
        assert night.provider == "grand_challenge" and night.upstream_id == JOB
        assert night.stage_array().tolist() == [0, 1, 2, 3, 4]
        assert night.end == START + timedelta(seconds=150)

    def test_it_reads_the_stages_shape_and_falls_back_to_its_recording_start(self, client, mock):
        value = {
            "epoch_seconds": 30,
            "classes": {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM"},
            "stages": [0, 2, 2, 4],
            "recording_start": "2024-03-01T23:00:00",  # EDF clock time, no offset
        }
        output = {
            "interface": ci("hypnogram", "Value"),
            "value": value,
            "file": None,
            "image": None,
            "pk": 9,
        }
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job(outputs=[output]))
        night = client.job_hypnogram(
            client.get_job(JOB),
            output_slug="hypnogram",
            timezone="Europe/Paris",
            upstream_user_id="u",
        )
        assert night.start == START and night.stage_array().tolist() == [0, 2, 2, 4]

    def test_it_refuses_an_output_without_any_recording_start(self, client, mock):
        output = {
            "interface": ci("hypnogram", "Value"),
            "value": [0, 1],
            "file": None,
            "image": None,
            "pk": 9,
        }
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job(outputs=[output]))
        with pytest.raises(UpstreamBadPayload, match="recording start"):
            client.job_hypnogram(
                client.get_job(JOB), output_slug="hypnogram", timezone="UTC", upstream_user_id="u"
            )

    def test_it_reads_a_hypnogram_file_output_following_a_storage_redirect_without_the_token(
        self, client, mock
    ):
        file_url = f"{API}components/componentinterfacevalues/9/hypnogram.json"
        output = {
            "interface": ci("hypnogram", "File"),
            "value": None,
            "file": file_url,
            "image": None,
            "pk": 9,
        }
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job(outputs=[output]))
        first = mock.get(file_url).respond(302, headers={"Location": f"{S3}/hypnogram.json?sig=1"})
        second = mock.get(f"{S3}/hypnogram.json").respond(200, json=[0, 0, 2, 4])
        night = client.job_hypnogram(
            client.get_job(JOB),
            output_slug="hypnogram",
            start=START,
            timezone="UTC",
            upstream_user_id="u",
        )
        assert night.stage_array().tolist() == [0, 0, 2, 4]
        assert first.calls.last.request.headers["Authorization"] == f"BEARER {TOKEN}"
        assert "authorization" not in second.calls.last.request.headers

    def test_it_refuses_the_hypnogram_of_a_job_that_did_not_succeed(self, client, mock):
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job("Failed"))
        with pytest.raises(UpstreamRejected):
            client.job_hypnogram(
                client.get_job(JOB),
                output_slug="hypnogram",
                start=START,
                timezone="UTC",
                upstream_user_id="u",
            )

    def test_it_refuses_a_malformed_hypnogram_output(self, client, mock):
        output = {
            "interface": ci("hypnogram", "Value"),
            "value": {"hypnogram": [0, 7]},
            "file": None,
            "image": None,
            "pk": 9,
        }
        mock.get(f"{API}algorithms/jobs/{JOB}/").respond(200, json=job(outputs=[output]))
        with pytest.raises(UpstreamBadPayload) as excinfo:
            client.job_hypnogram(
                client.get_job(JOB),
                output_slug="hypnogram",
                start=START,
                timezone="UTC",
                upstream_user_id="u",
            )
        assert excinfo.value.payload == {"hypnogram": [0, 7]}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"detail": "Invalid token."}, UpstreamAuthFailed),
        (403, {"detail": "You do not have permission to perform this action."}, UpstreamAuthFailed),
        (404, {"detail": "Not found."}, UpstreamNotFound),
        (500, None, UpstreamUnavailable),
        (502, None, UpstreamUnavailable),
        (503, None, UpstreamUnavailable),
    ],
)
def test_it_maps_error_statuses(client, mock, status, body, error):
    mock.get(f"{API}algorithms/jobs/{JOB}/").respond(status, json=body)
    with pytest.raises(error) as excinfo:
        client.get_job(JOB)
    assert TOKEN not in str(excinfo.value)


def test_it_reads_429_retry_after(client, mock):
    mock.get(f"{API}algorithms/jobs/{JOB}/").respond(429, headers={"Retry-After": "2"})
    with pytest.raises(UpstreamRateLimited) as excinfo:
        client.get_job(JOB)
    assert excinfo.value.retry_after == 2


def test_it_reads_a_timeout_and_truncated_json_as_unavailable(client, mock):
    mock.get(f"{API}algorithms/jobs/{JOB}/").mock(
        side_effect=[
            httpx.ReadTimeout("x"),
            httpx.Response(
                200, content=b'{"pk": "8a8f', headers={"Content-Type": "application/json"}
            ),
        ]
    )
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            client.get_job(JOB)
