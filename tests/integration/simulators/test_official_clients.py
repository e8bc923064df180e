"""The U-Sleep and Grand Challenge simulators driven by the OFFICIAL clients, unchanged.

``usleep-api`` 0.1.3 and ``gcapi`` pin versions that clash with ours (old requests, old
httpx), so they live in a separate virtualenv whose interpreter ``SIM_CLIENTS_PYTHON``
names; the clients run as subprocess scripts against the simulators served over real
sockets (Grand Challenge over https with a self-signed certificate).
"""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from integrations.simulators.edf import make_edf
from integrations.simulators.nights import synthetic_hypnogram
from integrations.simulators.server import start_in_thread
from integrations.simulators.usleep import expected_hypnogram

pytestmark = pytest.mark.integration

CLIENTS_VENV_HELP = """\
SIM_CLIENTS_PYTHON is not set: it must name the python of a virtualenv holding the official
upstream clients (they pin old requests/httpx, so they cannot share the project venv).
Create it from the project root with:

    python3 -m venv .venv-clients
    .venv-clients/bin/pip install usleep-api==0.1.3 gcapi==0.16.1
    export SIM_CLIENTS_PYTHON="$PWD/.venv-clients/bin/python"
"""

USLEEP_SCRIPT = r"""
import json, sys
from usleep_api import USleepAPI

url, token, edf, out_dir = sys.argv[1:5]
result = {}
try:
    USleepAPI(url=url, api_token="not-a-token")
except ConnectionRefusedError as e:
    result["bad_token"] = str(e)
api = USleepAPI(url=url, api_token=token)
result["models"] = api.get_model_names()
hyp, log = api.quick_predict(input_file_path=edf, output_file_path=out_dir + "/hyp.tsv")
result["hypnogram"], result["classes"], result["log"] = hyp["hypnogram"], hyp["classes"], log
hyp2, _ = api.quick_predict(input_file_path=edf, output_file_path=out_dir + "/probs.npy",
                            with_confidence_scores=True, anonymize_before_upload=False,
                            channel_groups=[["EEG C3-M2", "EOG E1-M2"]], model="U-Sleep v2.0")
result["hypnogram2"] = hyp2["hypnogram"]
result["sessions_left"] = api.get_session_names()
print("RESULT " + json.dumps(result))
"""

GC_SCRIPT = r"""
import json, sys, time, warnings
from pathlib import Path
from gcapi import Client, SocketValueSpec

api_url, token, edf, out_dir = sys.argv[1:5]
result = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with Client(base_url=api_url, token=token, verify=False) as c:
        algo = c.algorithms.detail(slug="sleep-staging")
        result["interfaces"] = [[i.slug for i in s.inputs] for s in algo.interfaces]
        job = c.start_algorithm_job(algorithm_slug="sleep-staging",
                                    inputs=[SocketValueSpec(socket_slug="psg-edf-file", file=edf)])
        statuses = [job.status]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = c.algorithm_jobs.detail(job.pk)
            if job.status != statuses[-1]:
                statuses.append(job.status)
            if job.status in ("Succeeded", "Failed", "Cancelled"):
                break
            time.sleep(0.05)
        result["statuses"] = statuses
        result["outputs"] = {o.interface.slug: o.value for o in job.outputs}
        c.download_socket_value(job.inputs[0], output_directory=Path(out_dir))
        result["jobs_listed"] = len(list(c.algorithm_jobs.iterate_all()))
        result["by_input_image"] = len(list(c.algorithm_jobs.by_input_image("any")))
result["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
print("RESULT " + json.dumps(result))
"""

GC_VERSION_SCRIPT = r"""
import sys
from gcapi import Client
from gcapi.check_version import UnsupportedVersionError
try:
    Client(base_url=sys.argv[1], token=sys.argv[2], verify=False)
except UnsupportedVersionError as e:
    print("RESULT unsupported")
"""


def clients_python() -> str:
    """The clients venv's python, or a test failure that says how to make it."""
    python = os.environ.get("SIM_CLIENTS_PYTHON")
    if not python:
        pytest.fail(CLIENTS_VENV_HELP, pytrace=False)
    check = subprocess.run(
        [python, "-c", "import usleep_api, gcapi"], capture_output=True, text=True
    )
    if check.returncode:
        pytest.fail(
            f"{python} cannot import usleep_api and gcapi:\n{check.stderr}\n\n{CLIENTS_VENV_HELP}",
            pytrace=False,
        )
    return python


def run_script(python: str, script: str, *args: str, timeout: float = 60) -> dict | str:
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"client script failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    payload = lines[-1][len("RESULT ") :]
    return json.loads(payload) if payload.startswith("{") else payload


@pytest.fixture(scope="module")
def psg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("psg") / "night.edf"
    path.write_bytes(make_edf(2 * 3600, seed=21, stages=synthetic_hypnogram(b"night", 240)))
    return path


class USleepOfficialClientTests:
    def test_quick_predict(self, psg, tmp_path):
        with start_in_thread("usleep", tokens=["usleep-token"], job_seconds=0) as sim:
            out = run_script(
                clients_python(), USLEEP_SCRIPT, sim.url, "usleep-token", str(psg), str(tmp_path)
            )
            paths = [e["path"] for e in sim.log()]
        assert out["bad_token"] == "Invalid authentication token specified."
        assert out["models"] == ["U-Sleep v1.0", "U-Sleep v2.0"]
        expected = expected_hypnogram(psg.read_bytes())
        assert out["hypnogram"] == expected == out["hypnogram2"] and len(expected) == 240
        assert out["classes"] == {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM"}
        assert "completed" in out["log"].lower()
        assert out["sessions_left"] == []  # quick_predict deletes its throw-away session
        assert (tmp_path / "hyp.tsv").read_text().startswith("init_sec\tduration_sec\tstage\n")
        assert (tmp_path / "probs.npy").stat().st_size > 240 * 5 * 4
        assert any(p.endswith("/file") for p in paths) and any(
            p.endswith("/predict") for p in paths
        )


class GrandChallengeOfficialClientTests:
    def test_algorithm_job_with_retries(self, psg, tmp_path):
        # Request 2 (the algorithm lookup) is rate limited and request 10 (the job POST) gets a
        # 503: gcapi's transport retries both, the first after the Retry-After second.
        with start_in_thread(
            "grand_challenge",
            tokens=["g" * 64],
            job_seconds=1.0,
            schedule={"2": "429:1", "10": "503"},
        ) as sim:
            out = run_script(
                clients_python(), GC_SCRIPT, sim.api_url, "g" * 64, str(psg), str(tmp_path)
            )
            log = sorted(sim.log(), key=lambda e: e["index"])
        assert out["warnings"] == []
        assert out["interfaces"] == [["psg-edf-file"]]
        assert out["statuses"][0] == "Validating inputs" and out["statuses"][-1] == "Succeeded"
        assert "Executing" in out["statuses"]
        value = out["outputs"]["hypnogram"]
        assert (
            value["stages"] == expected_hypnogram(psg.read_bytes()) and value["epoch_seconds"] == 30
        )
        assert (tmp_path / "psg.edf").read_bytes() == psg.read_bytes()
        assert out["jobs_listed"] == out["by_input_image"] == 1
        steps = [
            (
                e["method"],
                e["path"].split("/")[3] if e["path"].startswith("/api") else "s3",
                e["status"],
            )
            for e in log[:11]
        ]
        assert steps == [
            ("GET", "gcapi", 200),
            ("GET", "algorithms", 429),
            ("GET", "algorithms", 200),
            ("GET", "algorithms", 200),
            ("GET", "components", 200),
            ("POST", "uploads", 201),
            ("PATCH", "uploads", 200),
            ("PUT", "s3", 200),
            ("PATCH", "uploads", 200),
            ("POST", "algorithms", 503),
            ("POST", "algorithms", 201),
        ]
        assert log[2]["t"] - log[1]["t_end"] >= 1.0

    def test_version_gate(self):
        with start_in_thread(
            "grand_challenge", tokens=["t"], gcapi_lowest_supported_version="99.0"
        ) as sim:
            assert (
                run_script(clients_python(), GC_VERSION_SCRIPT, sim.api_url, "t") == "unsupported"
            )
