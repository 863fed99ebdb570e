"""Introspection endpoints through a real cheroot server (the ``live_server`` fixture)."""

from __future__ import annotations

import pytest
import requests
from conftest import LiveServer

from server import __version__


def test_health(live_server: LiveServer) -> None:
    response = requests.get(f"{live_server.url}/-/health", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {"status": "ok"}


def test_ready(live_server: LiveServer) -> None:
    response = requests.get(f"{live_server.url}/-/ready", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "store": "ok"}}


def test_ready_reports_an_unwritable_store(live_server: LiveServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise PermissionError(13, "Permission denied", "/data/store/.staging")

    monkeypatch.setattr(live_server.repo.store, "check_writable", refuse)
    response = requests.get(f"{live_server.url}/-/ready", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["store"].startswith("error: ")
    # health only says the process answers
    assert requests.get(f"{live_server.url}/-/health", timeout=10).status_code == 200


def test_version(live_server: LiveServer) -> None:
    body = requests.get(f"{live_server.url}/-/version", timeout=10).json()
    assert body == {"davpack": __version__, "site_handle": "123456789/0",
                    "base_url": "http://127.0.0.1:8080",
                    "database": live_server.repo.engine.dialect.name,
                    "sword_service_document": "http://127.0.0.1:8080/sword"}


def test_head_has_no_body(live_server: LiveServer) -> None:
    response = requests.head(f"{live_server.url}/-/health", timeout=10)
    assert response.status_code == 200
    assert response.content == b""


def test_other_methods_and_pages(live_server: LiveServer) -> None:
    post = requests.post(f"{live_server.url}/-/health", data=b"x", timeout=10)
    assert post.status_code == 405
    assert requests.get(f"{live_server.url}/-/nothing", timeout=10).status_code == 404
    assert requests.get(f"{live_server.url}/elsewhere", timeout=10).status_code == 404


def test_the_fixture_serves_concurrent_requests(live_server: LiveServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(
            lambda _: requests.get(f"{live_server.url}/-/ready", timeout=10).status_code,
            range(24)))
    assert codes == [200] * 24


def test_the_server_mounts_sword(live_server: LiveServer, admin: object) -> None:
    """The service document answers in the main application, behind Basic auth."""
    anonymous = requests.get(f"{live_server.url}/sword", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    document = requests.get(f"{live_server.url}/sword", auth=("admin@example.org", "secret"),
                            timeout=10)
    assert document.status_code == 200, document.text
    assert b"version>2.0</" in document.content
    assert document.headers["Content-Type"].startswith("application/atomsvc+xml")
