"""U-Sleep simulator: the flow usleep-api 0.1.3 drives (shared/upstreams.md §2)."""

import io
import time

import numpy as np
import pytest

from integrations.simulators.edf import make_edf
from integrations.simulators.usleep import create_app, expected_hypnogram

S = "/api/v1/sleep_stager/abc123"


@pytest.fixture
def api(client_for):
    app = create_app(tokens=["tok"], job_seconds=0)
    c = client_for(app)
    c.headers["Authorization"] = "Bearer tok"
    c.sim = app.state.sim
    return c


def run_prediction(api, edf: bytes, groups=(("EEG C3-M2", "EOG E1-M2"),), dpp=3840):
    api.post(S + "/set_model", data={"model": "U-Sleep v1.0"})
    r = api.post(S + "/file", files={"PSG": ("night.edf", edf, "application/octet-stream")})
    assert r.status_code == 200, r.text
    form = {"data_per_prediction": str(dpp)}
    k = 0
    for g, chans in enumerate(groups):
        for ch in chans:
            form[f"channels-{k}"], form[f"channel_group_idx-{k}"] = ch, str(g)
            k += 1
    assert api.post(S + "/predict", data=form).status_code == 200


class USleepTests:
    def test_ping_and_info(self, api):
        assert api.get("/api/v1/info/ping").status_code == 200
        bad = api.get("/api/v1/info/ping", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and "error" in bad.json()
        assert api.get("/api/v1/info/model_names").json() == {
            "models": ["U-Sleep v1.0", "U-Sleep v2.0"]
        }
        assert api.get("/api/v1/info/config/MAX_CHANNEL_COMBINATIONS").json() == {
            "MAX_CHANNEL_COMBINATIONS": 24
        }

    def test_minted_tokens_are_jwts_with_a_12h_life(self, client_for):
        import base64
        import json

        c = client_for(create_app())
        token = c.post("/_sim/credentials", json={"identity": "lab@example.test"}).json()["value"]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["exp"] - claims["iat"] == 43200 and claims["identity"] == "lab@example.test"
        assert (
            c.get("/api/v1/info/ping", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )

    def test_file_info(self, api):
        api.post(S + "/file", files={"PSG": ("n.edf", make_edf(300), "application/octet-stream")})
        info = api.get(S + "/file").json()
        assert info["channels"] == ["EEG C3-M2", "EOG E1-M2", "EMG chin"]
        assert info["inferred_channel_types"] == ["EEG", "EOG", "EMG"]
        req = api.get(S + "/configuration_options").json()["required_channels"]
        assert all("EEG" in r or "EOG" in r for r in req)
        assert api.get("/api/v1/sleep_stager/session_names").json() == {"session_names": ["abc123"]}

    def test_full_prediction(self, api):
        edf = make_edf(3600, seed=9)
        run_prediction(api, edf)
        stream = api.get(S + "/prediction_log_stream").json()
        assert stream["finished"] is True and "completed" in stream["log"].lower()
        assert api.get(S + "/prediction_status").json()["label"].lower() == "completed"
        hyp = api.get(S + "/hypnogram").json()
        assert len(hyp["hypnogram"]) == 120 and hyp["classes"]["4"] == "REM"
        assert hyp["hypnogram"] == expected_hypnogram(edf)
        npy = np.load(io.BytesIO(api.get(S + "/download/hypnogram_npy").content))
        raw = np.load(io.BytesIO(api.get(S + "/download/hypnogram_raw_npy").content))
        assert npy.shape == (120, 1) and raw.shape == (120, 5)
        assert raw.argmax(axis=1).tolist() == hyp["hypnogram"]
        tsv = api.get(S + "/download/hypnogram_tsv").text.splitlines()
        assert tsv[0] == "init_sec\tduration_sec\tstage" and tsv[1].startswith("0\t")
        assert sum(float(line.split("\t")[1]) for line in tsv[1:]) == 3600
        assert api.delete(S).status_code == 200
        assert api.get("/api/v1/sleep_stager/session_names").json() == {"session_names": []}

    def test_hypnogram_depends_on_data_not_header(self, api):
        a = bytearray(make_edf(1800, seed=1))
        b = bytes(a[:8]) + b"X X X X_X".ljust(80) + bytes(a[88:])
        assert expected_hypnogram(bytes(a)) == expected_hypnogram(b)
        assert expected_hypnogram(bytes(a)) != expected_hypnogram(make_edf(1800, seed=2))
        assert len(expected_hypnogram(bytes(a), data_per_prediction=128 * 15)) == 120

    def test_progress_takes_job_seconds(self, api):
        api.post("/_sim/config", json={"job_seconds": 1.0})
        run_prediction(api, make_edf(600))
        first = api.get(S + "/prediction_log_stream").json()
        assert first["finished"] is False
        assert api.get(S + "/prediction_status").json()["label"] == "In progress"
        assert api.get(S + "/hypnogram").status_code == 404
        time.sleep(1.05)
        assert api.get(S + "/prediction_log_stream").json()["finished"] is True
        assert api.get(S + "/prediction_status").json()["label"] == "Completed"

    def test_bad_inputs_answer_json(self, api):
        r = api.post(
            S + "/file", files={"PSG": ("x.edf", b"not an edf", "application/octet-stream")}
        )
        assert r.status_code == 400 and "EDF" in r.json()["error"]
        r = api.post(S + "/predict", data={"data_per_prediction": "3840"})
        assert r.status_code == 400 and "error" in r.json()
        assert api.get("/api/v1/nothing/here").json()["error"]
        run_prediction(api, make_edf(600), groups=(("EEG F4-M1",),))
        api.get(S + "/prediction_log_stream")
        assert api.get(S + "/prediction_status").json()["label"] == "Failed"

    def test_at_most_five_sessions(self, api):
        for i in range(5):
            assert api.get(f"/api/v1/sleep_stager/s{i}/configuration_options").status_code == 200
        r = api.get("/api/v1/sleep_stager/s5/configuration_options")
        assert r.status_code == 429 and "error" in r.json()
