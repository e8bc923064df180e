"""The simulators' JSON: orjson writing what starlette's stdlib-json JSONResponse wrote."""

import json
import random
import struct
import warnings
from collections import namedtuple

import numpy as np

from integrations.simulators.harness import JSONResponse, json_body_response, json_bytes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning, as in conftest
    from starlette.responses import JSONResponse as StarletteJSONResponse


class JsonBytesTests:
    def test_it_writes_the_bytes_starlette_wrote(self):
        payload = {
            "detail": "OK",
            "result": {
                "zone": "Europe/København",
                "items": [[1471271701.304574, 87], [0.1, -2.41], [None, True, False]],
                "ratio": 0.8962782,
                "big": 2**62,
                "nested": {"empty": [], "none": None},
            },
        }
        assert json_bytes(payload) == StarletteJSONResponse(payload).body
        assert JSONResponse(payload).body == StarletteJSONResponse(payload).body
        assert JSONResponse(payload).headers["content-type"] == "application/json"

    def test_it_keeps_every_float_value(self):
        # Shortest round-trip in both; only the spelling of some exponents differs (1e-5).
        rng = random.Random(3)
        for _ in range(20000):
            x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
            if x != x or abs(x) == float("inf"):
                continue
            assert json.loads(json_bytes(x)) == x
        for x in (0.1, 1e-7, 1e16, 123456.7, -2.41, 1471271701.304574, 5e-324):
            assert json.loads(json_bytes(x)) == json.loads(json.dumps(x)) == x

    def test_it_takes_what_json_took(self):
        Point = namedtuple("Point", "t v")
        value = {1: Point(1.5, 2), "f": np.float64(0.25)}
        assert json_bytes(value) == json.dumps(value, separators=(",", ":")).encode()

    def test_a_prebuilt_body_is_sent_as_is(self):
        r = json_body_response(b"[1,2]", status_code=201)
        assert r.body == b"[1,2]" and r.status_code == 201
        assert r.headers["content-type"] == "application/json"
