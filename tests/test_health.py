"""/healthz, for load balancers and for Rewind's own monitoring."""

from tests.support.apps import build_app
from tests.support.postgres import free_port


def test_healthz_reports_a_reachable_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "ops_database": "reachable"}


def test_healthz_reports_an_unreachable_database(tmp_path):
    app = build_app(tmp_path, f"postgresql://rewind@127.0.0.1:{free_port()}/nothing")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "degraded" and body["ops_database"].startswith("unreachable")


def test_pages_send_protective_headers(client):
    response = client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_page_is_a_404_page(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and "Not found" in response.get_data(as_text=True)
