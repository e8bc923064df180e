"""Grand Challenge simulator: version gate, auth, pagination, S3 uploads, jobs (upstreams.md §3)."""

import time

import pytest

from integrations.simulators.edf import make_edf
from integrations.simulators.grand_challenge import create_app
from integrations.simulators.usleep import expected_hypnogram

TOKEN = "f" * 64
A = "/api/v1/"


@pytest.fixture
def api(client_for):
    app = create_app(tokens=[TOKEN], job_seconds=0)
    c = client_for(app, base_url="https://testserver")
    c.headers["Authorization"] = f"BEARER {TOKEN}"
    return c


def upload(api, data: bytes, name="psg.edf", part_size=None):
    up = api.post(A + "uploads/", json={"filename": name}).json()
    assert up["status"] == "Initialized" and up["key"].endswith(up["pk"])
    chunks = (
        [data[i : i + part_size] for i in range(0, len(data), part_size)] if part_size else [data]
    )
    urls = api.patch(
        A + f"uploads/{up['pk']}/{up['s3_upload_id']}/generate-presigned-urls/",
        json={"part_numbers": list(range(1, len(chunks) + 1))},
    ).json()["presigned_urls"]
    parts = []
    for n, chunk in enumerate(chunks, 1):
        r = api.put(urls[str(n)], content=chunk, headers={"Authorization": ""})
        assert r.status_code == 200
        parts.append({"ETag": r.headers["ETag"], "PartNumber": n})
    done = api.patch(
        A + f"uploads/{up['pk']}/{up['s3_upload_id']}/complete-multipart-upload/",
        json={"parts": parts},
    )
    assert done.json()["status"] == "Completed"
    return done.json()


def start_job(api, up):
    algo = api.get(A + "algorithms/", params={"slug": "sleep-staging"}).json()["results"][0]
    body = {
        "algorithm": algo["api_url"],
        "inputs": [
            {
                "interface": "psg-edf-file",
                "value": None,
                "file": None,
                "image": None,
                "upload_session": None,
                "user_upload": up["api_url"],
                "user_uploads": None,
                "image_name": None,
            }
        ],
    }
    return api.post(A + "algorithms/jobs/", json=body)


class GrandChallengeTests:
    def test_version_gate_needs_no_auth_and_exact_content_type(self, api):
        r = api.get(A + "gcapi/", headers={"Authorization": ""})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert set(r.json()) == {"latest_version", "lowest_supported_version"}

    def test_auth(self, api):
        r = api.get(A + "algorithms/", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json() == {"detail": "Invalid token."}
        assert (
            api.get(A + "algorithms/", headers={"Authorization": f"bearer {TOKEN}"}).status_code
            == 200
        )

    def test_algorithm_and_sockets(self, api):
        page = api.get(A + "algorithms/", params={"slug": "sleep-staging"}).json()
        assert set(page) == {"count", "next", "previous", "results"} and page["count"] == 1
        algo = page["results"][0]
        for k in (
            "api_url",
            "url",
            "description",
            "pk",
            "title",
            "logo",
            "slug",
            "average_duration",
            "interfaces",
        ):
            assert k in algo
        assert algo["api_url"].startswith("https://testserver/api/v1/algorithms/")
        assert api.get(algo["api_url"]).json()["slug"] == "sleep-staging"
        assert api.get(A + "algorithms/", params={"slug": "nope"}).json()["count"] == 0
        ci = api.get(A + "components/interfaces/", params={"slug": "hypnogram"}).json()["results"][
            0
        ]
        assert {
            "title",
            "description",
            "slug",
            "kind",
            "pk",
            "default_value",
            "super_kind",
            "relative_path",
            "overlay_segments",
            "look_up_table",
        } <= set(ci)
        assert ci["super_kind"] == "Value" and ci["kind"] == "Anything"

    def test_multipart_upload_and_job_to_success(self, api):
        data = make_edf(1800, seed=4)
        up = upload(api, data, part_size=100_000)
        parts = api.get(A + f"uploads/{up['pk']}/{up['s3_upload_id']}/list-parts/").json()["parts"]
        assert [p["PartNumber"] for p in parts] == list(range(1, len(parts) + 1)) and len(parts) > 1
        r = start_job(api, up)
        assert r.status_code == 201
        post = r.json()
        assert (
            post["status"] == "Validating inputs"
            and post["inputs"][0]["interface"] == "psg-edf-file"
        )
        job = api.get(A + f"algorithms/jobs/{post['pk']}/").json()
        assert job["status"] == "Succeeded"
        out = job["outputs"][0]
        assert out["interface"]["slug"] == "hypnogram" and out["socket"]["slug"] == "hypnogram"
        assert (
            out["value"]["stages"] == expected_hypnogram(data)
            and out["value"]["epoch_seconds"] == 30
        )
        assert api.get(job["inputs"][0]["file"]).content == data
        for k in (
            "pk",
            "url",
            "api_url",
            "algorithm_image",
            "inputs",
            "outputs",
            "status",
            "hanging_protocol",
            "optional_hanging_protocols",
            "view_content",
            "exec_duration",
            "invoke_duration",
            "algorithm",
        ):
            assert k in job

    def test_status_progression(self, api):
        api.post("/_sim/config", json={"job_seconds": 1.0})
        pk = start_job(api, upload(api, make_edf(600))).json()["pk"]
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            s = api.get(A + f"algorithms/jobs/{pk}/").json()["status"]
            if not seen or seen[-1] != s:
                seen.append(s)
            if s == "Succeeded":
                break
            time.sleep(0.02)
        assert (
            seen[0] in ("Validating inputs", "Queued")
            and seen[-1] == "Succeeded"
            and "Executing" in seen
        )

    def test_failures(self, api):
        job = start_job(api, upload(api, b"definitely not EDF", name="x.edf")).json()
        assert api.get(A + f"algorithms/jobs/{job['pk']}/").json()["status"] == "Failed"
        up = api.post(A + "uploads/", json={"filename": "a.edf"}).json()
        r = api.patch(
            A + f"uploads/{up['pk']}/wrong/generate-presigned-urls/", json={"part_numbers": [1]}
        )
        assert r.status_code == 404
        urls = api.patch(
            A + f"uploads/{up['pk']}/{up['s3_upload_id']}/generate-presigned-urls/",
            json={"part_numbers": [1]},
        ).json()["presigned_urls"]
        api.put(urls["1"], content=b"abc")
        r = api.patch(
            A + f"uploads/{up['pk']}/{up['s3_upload_id']}/complete-multipart-upload/",
            json={"parts": [{"ETag": '"bad"', "PartNumber": 1}]},
        )
        assert r.status_code == 400
        assert (
            api.put(
                urls["1"].replace("X-Amz-Signature=", "X-Amz-Signature=0"), content=b"x"
            ).status_code
            == 403
        )
        r = api.post(
            A + "algorithms/jobs/",
            json={"algorithm": "https://testserver/api/v1/algorithms/x/", "inputs": []},
        )
        assert r.status_code == 400 and "algorithm" in r.json()
        r = api.post(A + "algorithms/jobs/", content=b"{}", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415

    def test_jobs_list_ignores_unknown_filters(self, api):
        data = make_edf(300)
        for _ in range(2):
            start_job(api, upload(api, data))
        assert api.get(A + "algorithms/jobs/", params={"image": "whatever"}).json()["count"] == 2
        page = api.get(A + "algorithms/jobs/", params={"limit": 1}).json()
        assert len(page["results"]) == 1 and "offset=1" in page["next"] and page["previous"] is None
