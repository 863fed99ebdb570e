"""Real clients against a real server: webdav4 (PyPI), cadaver and rclone (Debian), and
headless Chromium on the browse page.  Each lists the tree, downloads a package and
uploads one that becomes an item; a client that is not installed is skipped."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from http_packagers import build_zip
from http_support import ADMIN, DavServer
from sqlalchemy import select

from server import models as m
from server.services import fixity, metadata

pytest_plugins = ("http_fixtures",)


def _titles(server: DavServer) -> list[str]:
    with server.repo.context(write=False) as ctx:
        return sorted(metadata.first(i, "dc.title") or "" for i in
                      ctx.session.scalars(select(m.Item).where(m.Item.in_archive.is_(True))))


def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (bash .ci/system-deps installs it)")
    return path


def _valid_zip(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return zf.namelist()


def test_webdav4(dav_server: DavServer, tmp_path: Path) -> None:
    webdav4 = pytest.importorskip("webdav4.client")
    client = webdav4.Client(f"{dav_server.url}/dav/", auth=ADMIN)
    entries = {e["name"]: e for e in client.ls("Community A/Collection 1", detail=True)}
    package_name = f"Community A/Collection 1/{dav_server.tree.item_file()}"
    assert entries[package_name]["type"] == "file"
    assert entries[package_name]["content_length"] > 0
    target = tmp_path / "item.zip"
    client.download_file(package_name, target)
    assert target.stat().st_size == entries[package_name]["content_length"]
    assert "manifest.json" in _valid_zip(target)
    upload = tmp_path / "upload.zip"
    upload.write_bytes(build_zip("Uploaded with webdav4", {"w.txt": b"w" * 5000}))
    client.upload_file(upload, "Community A/Collection 1/webdav4.zip")
    assert "Uploaded with webdav4" in _titles(dav_server)
    assert client.exists("Community A/Collection 1/webdav4.zip")
    assert dav_server.errors_5xx() == []


def test_cadaver(dav_server: DavServer, tmp_path: Path) -> None:
    cadaver = _need("cadaver")
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1\nlogin {ADMIN[0]}\npassword {ADMIN[1]}\n")
    netrc.chmod(0o600)
    (tmp_path / "cadaver-upload.zip").write_bytes(
        build_zip("Uploaded with cadaver", {"c.txt": b"c" * 3000}))
    script = "\n".join([
        "ls",
        'cd "Community A/Collection 1"',
        "ls",
        f"get {dav_server.tree.item_file()} downloaded.zip",
        "put cadaver-upload.zip",
        "propget cadaver-upload.zip",
        "quit", ""])
    result = subprocess.run([cadaver, "-t", f"{dav_server.url}/dav/"], input=script,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "HOME": str(home)})
    out = result.stdout + result.stderr
    assert "Community A" in out
    assert dav_server.tree.item_file() in out
    assert not re.search(r"Error|failed", out, re.IGNORECASE), out
    assert "manifest.json" in _valid_zip(tmp_path / "downloaded.zip")
    assert "Uploaded with cadaver" in _titles(dav_server)
    assert "urn:davpack:props handle = " in out
    assert dav_server.errors_5xx() == []


def test_rclone(dav_server: DavServer, tmp_path: Path) -> None:
    rclone = _need("rclone")
    obscured = subprocess.run([rclone, "obscure", ADMIN[1]], capture_output=True, text=True,
                              check=True).stdout.strip()
    config = tmp_path / "rclone.conf"
    config.write_text(f"[repo]\ntype = webdav\nurl = {dav_server.url}/dav/\nvendor = other\n"
                      f"user = {ADMIN[0]}\npass = {obscured}\n")
    env = {**os.environ, "RCLONE_CONFIG": str(config)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([rclone, *args], capture_output=True, text=True, timeout=120,
                              env=env)

    listing = run("lsjson", "-R", "repo:Community A")
    assert listing.returncode == 0, listing.stderr
    import json

    entries = {e["Path"]: e for e in json.loads(listing.stdout)}
    package = f"Collection 1/{dav_server.tree.item_file()}"
    assert entries[package]["Size"] > 0 and not entries[package]["IsDir"]
    download = run("copy", f"repo:Community A/{package}", str(tmp_path / "down"))
    assert download.returncode == 0, download.stderr
    assert "manifest.json" in _valid_zip(tmp_path / "down" / dav_server.tree.item_file())
    source = tmp_path / "rclone.zip"
    source.write_bytes(build_zip("Uploaded with rclone", {"r.txt": b"r" * 4000}))
    upload = run("copyto", str(source), "repo:Community A/Collection 1/rclone.zip")
    assert upload.returncode == 0, upload.stderr
    # rclone checks what it uploaded (size) and would retry: exactly one item results
    assert _titles(dav_server).count("Uploaded with rclone") == 1
    check = run("check", str(tmp_path), "repo:Community A/Collection 1", "--one-way",
                "--include", "rclone.zip")
    assert check.returncode == 0, check.stderr
    assert dav_server.errors_5xx() == []
    assert [f for f in fixity.check(dav_server.repo)] == []


def test_chromium_renders_the_browse_page(dav_server: DavServer, tmp_path: Path) -> None:
    chromium = _need("chromium")
    page = f"{dav_server.url}/dav/Community%20A/Collection%201/"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page],
        capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert "<h1>Collection 1</h1>" in dom, (dom[:500], result.stderr[-2000:])
    assert "<table>" in dom and dav_server.tree.item_file() in dom
    links = re.findall(r'<a class="download" href="([^"]+)"', dom)
    assert links and "package=TESTZIP" in links[0]
    href = links[0].replace("&amp;", "&")
    download = requests.get(urljoin(page, href), timeout=30)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert names == ["manifest.json"]  # a collection package: its manifest
    package_links = re.findall(r'href="([^"]+\.zip)" download', dom)
    item = requests.get(urljoin(page, package_links[0]), timeout=30)
    assert "files/ORIGINAL/thesis.pdf" in zipfile.ZipFile(io.BytesIO(item.content)).namelist()
    shot = tmp_path / "page.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile2'}",
         f"--screenshot={shot}", "--window-size=1000,700", page],
        capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 1000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dav_server.errors_5xx() == []
