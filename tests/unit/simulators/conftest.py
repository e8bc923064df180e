import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning: starlette prefers httpx2 now
    from starlette.testclient import TestClient


@pytest.fixture
def client_for():
    """``client_for(app, base_url=...)`` -> a TestClient (in-process, no sockets)."""
    made = []

    def make(app, base_url="http://testserver"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = TestClient(app, base_url=base_url)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()
