"""Through a real cheroot server on port 0: transfers, early refusals, dropped
connections, TLS, request logging and graceful stop."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from http_packagers import build_zip
from http_support import ADMIN, Dav, DavServer, running_server
from sqlalchemy import func, select

from server import models as m
from server.services import fixity

pytest_plugins = ("http_fixtures",)


def _items(server: DavServer) -> int:
    with server.repo.context(write=False) as ctx:
        return int(ctx.session.scalar(select(func.count()).select_from(m.Item)) or 0)


def _staging(server: DavServer) -> list[str]:
    return sorted(p.name for p in server.repo.config.path("server.staging_dir").iterdir())


def _send_raw(url: str, request: bytes, *, read_timeout: float = 10) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes; returns (response, seconds)."""
    host, port = url.split("//")[1].split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks), time.monotonic() - started


def test_download_resume_and_keep_alive(dav_server: DavServer) -> None:
    url = f"{dav_server.url}/handle/{dav_server.tree.item_handle}"
    with requests.Session() as session:
        whole = session.get(url, timeout=30)
        assert whole.status_code == 200
        assert int(whole.headers["Content-Length"]) == len(whole.content)
        zipfile.ZipFile(__import__("io").BytesIO(whole.content)).testzip()
        part = session.get(url, headers={"Range": "bytes=1000-",
                                         "If-Range": whole.headers["ETag"]}, timeout=30)
        assert part.status_code == 206 and part.content == whole.content[1000:]
        head = session.head(url, timeout=30)
        assert head.headers["Content-Length"] == whole.headers["Content-Length"]
        cached = session.get(url, headers={"If-None-Match": whole.headers["ETag"]}, timeout=30)
        assert cached.status_code == 304
        assert "close" not in cached.headers.get("Connection", "")
    assert dav_server.errors_5xx() == []


def test_uploads_plain_chunked_and_expect_continue(dav_server: DavServer) -> None:
    collection = f"{dav_server.url}/handle/{dav_server.tree.collection_handle}"
    package = build_zip("Live", {"big.bin": os.urandom(3 * 1024 * 1024)})
    plain = requests.post(collection, data=package, auth=ADMIN, timeout=60)
    assert plain.status_code == 201, plain.text

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(package), 100_000):
            yield package[start:start + 100_000]

    chunked = requests.post(collection, data=chunks(), auth=ADMIN, timeout=60)
    assert chunked.status_code == 201, chunked.text
    put = requests.put(f"{dav_server.url}/dav/Community%20A/Collection%201/live.zip",
                       data=package, auth=ADMIN, headers={"Expect": "100-continue"},
                       timeout=60)
    assert put.status_code == 201, put.text
    back = requests.get(f"{dav_server.url}/dav/Community%20A/Collection%201/live.zip",
                        timeout=60)
    assert hashlib.sha256(back.content).digest() == hashlib.sha256(package).digest()
    assert _items(dav_server) == 4
    assert dav_server.errors_5xx() == []
    assert [f for f in fixity.check(dav_server.repo)] == []


def test_refusals_arrive_before_the_body_is_sent(dav_server: DavServer) -> None:
    runtime = dav_server.server.wsgi_app.runtime
    runtime.max_upload_size = 1024 * 1024
    path = f"/handle/{dav_server.tree.collection_handle}"
    huge = 50 * 1024 * 1024 * 1024
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {huge}\r\n"
               "Content-Type: application/zip\r\n\r\n").encode() + b"x" * 65536
    import base64

    auth = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    too_big = request.replace(b"Host: x\r\n", f"Host: x\r\nAuthorization: Basic {auth}\r\n"
                              .encode())
    answer, seconds = _send_raw(dav_server.url, too_big)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"SizeLimitExceeded"' in answer
    assert seconds < 5
    anonymous, seconds = _send_raw(dav_server.url, request.replace(
        str(huge).encode(), str(200 * 1024 * 1024).encode()))
    assert anonymous.startswith(b"HTTP/1.1 401 "), anonymous[:200]
    assert b"Connection: close" in anonymous
    assert seconds < 5
    assert _staging(dav_server) == []


def test_dropped_connection_keeps_nothing(dav_server: DavServer) -> None:
    import base64

    package = build_zip("Dropped", {"d.bin": os.urandom(2 * 1024 * 1024)})
    auth = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    for method, path in (("POST", f"/handle/{dav_server.tree.collection_handle}"),
                         ("PUT", "/dav/Community%20A/Collection%201/dropped.zip")):
        head = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                f"Content-Length: {len(package)}\r\n\r\n").encode()
        host, port = dav_server.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head + package[: len(package) // 2])
            time.sleep(0.3)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                getattr(r, "status", 0) == 400 and getattr(r, "method", "") == method
                for r in dav_server.log):
            time.sleep(0.1)
    statuses = [(r.method, r.status) for r in dav_server.log  # type: ignore[attr-defined]
                if r.name == "davpack.access"]
    assert ("POST", 400) in statuses and ("PUT", 400) in statuses
    assert _items(dav_server) == 1
    assert _staging(dav_server) == []
    listing = requests.request("PROPFIND", f"{dav_server.url}/dav/Community%20A/Collection%201/",
                               headers={"Depth": "1"}, timeout=10).text
    assert "dropped.zip" not in listing
    assert [f for f in fixity.check(dav_server.repo)] == []


def test_request_ids_and_the_access_log(dav_server: DavServer) -> None:
    given = requests.get(f"{dav_server.url}/-/health", headers={"X-Request-ID": "abc-123"},
                         timeout=10)
    assert given.headers["X-Request-ID"] == "abc-123"
    made = requests.get(f"{dav_server.url}/dav/", headers={"X-Request-ID": "bad id!"},
                        timeout=10)
    assert made.headers["X-Request-ID"] != "bad id!" and len(made.headers["X-Request-ID"]) == 16
    lines = [r for r in dav_server.log if r.name == "davpack.access"]
    assert any(getattr(r, "path", "") == "/-/health" and getattr(r, "request_id", "") ==
               "abc-123" and getattr(r, "status", 0) == 200 for r in lines)


def test_json_log_format() -> None:
    from server.http.logs import JsonFormatter, RequestIdFilter

    record = logging.LogRecord("davpack.access", logging.INFO, __file__, 1, "GET %s", ("/x",),
                               None)
    record.status = 200  # type: ignore[attr-defined]
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x" and line["status"] == 200 and line["request_id"] == "-"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        from cryptography import x509
    except ImportError:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        return cert, key
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    return cert, key


def test_tls(dav: Dav, tmp_path: Path) -> None:
    if not (__import__("shutil").which("openssl")):
        try:
            import cryptography  # noqa: F401
        except ImportError:
            pytest.skip("neither openssl nor cryptography is available")
    cert, key = _self_signed(tmp_path)
    dav.repo.config.values["server"]["ssl_certificate"] = str(cert)
    dav.repo.config.values["server"]["ssl_private_key"] = str(key)
    with running_server(dav.repo, dav.app, dav.tree) as server:
        url = server.url.replace("http://", "https://")
        response = requests.get(f"{url}/handle/{dav.tree.item_handle}", verify=str(cert),
                                auth=ADMIN, timeout=30)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/-/health", timeout=10)  # not trusted without the cert
        upload = requests.post(f"{url}/handle/{dav.tree.collection_handle}", verify=str(cert),
                               auth=ADMIN, data=build_zip("Over TLS", {"t": b"t"}), timeout=30)
        assert upload.status_code == 201
    dav.repo.config.values["server"]["ssl_certificate"] = None
    dav.repo.config.values["server"]["ssl_private_key"] = None


def test_serve_command_stops_on_sigterm(tmp_path: Path, dav: Dav) -> None:
    import yaml

    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": dav.repo.config.database_url},
        "store": {"path": str(dav.repo.config.path("store.path")), "fsync": False},
        "server": {"port": 0, "staging_dir": str(tmp_path / "staging"), "log_format": "json"},
    }), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAVPACK_")}
    command = "import sys; from server.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", command, "--config", str(config), "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).parents[1])
    try:
        banner = proc.stdout.readline() if proc.stdout else ""
        assert banner.startswith("davpack serving http://"), banner
        url = banner.split()[2].rstrip("/")
        assert requests.get(f"{url}/-/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "davpack stopped" in err
    access = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e.get("logger") == "davpack.access" and e.get("path") == "/-/health"
               and e.get("status") == 200 for e in access)
