import re

import pytest


@pytest.mark.django_db
class ApiDocsTests:
    def test_it_serves_an_openapi_3_schema_with_the_tenant_routes(self, client):
        response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
        assert response.status_code == 200
        schema = response.json()
        assert schema["openapi"].startswith("3.")
        assert "/api/v1/orgs/{org}/participants/{uuid}/" in schema["paths"]

    @pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
    def test_it_serves_interactive_docs_without_any_cdn(self, client, url):
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
        assert external == []
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert assets, "the docs page should load its assets from /static/"
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


@pytest.mark.django_db
def test_it_reports_health_without_personal_data(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert set(response.json()) == {"database", "worker", "worker_seen_seconds_ago"}
