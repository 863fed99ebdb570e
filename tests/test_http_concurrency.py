"""16 clients mixing GET, PUT and POST against one server for a bounded time.

Afterwards: no 5xx was answered, every object a 201 announced exists completely (handle,
archived, files readable with the recorded checksums), and the store holds exactly what
the database records (fixity finds nothing missing, altered or orphaned).
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from http_packagers import build_zip
from http_support import ADMIN, Dav, running_server
from sqlalchemy import select

from server import models as m
from server.services import fixity

pytest_plugins = ("http_fixtures",)

CLIENTS = 16
SECONDS = float(os.environ.get("DAVPACK_CONCURRENCY_SECONDS", "20"))
SHARED = os.urandom(64 * 1024)  # identical content from many clients: stored once


@pytest.mark.slow
def test_sixteen_clients_mixing_reads_and_writes(dav: Dav) -> None:
    with running_server(dav.repo, dav.app, dav.tree, threads=CLIENTS + 4) as server:
        base = server.url
        collection = f"{base}/handle/{dav.tree.collection_handle}"
        folder = f"{base}/dav/Community%20A/Collection%201"
        created: list[str] = []
        statuses: Counter[tuple[str, int]] = Counter()
        problems: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + SECONDS

        def record(kind: str, response: requests.Response) -> None:
            with lock:
                statuses[(kind, response.status_code)] += 1
                if response.status_code >= 500 or response.status_code not in (200, 201, 207):
                    problems.append(f"{kind} {response.request.url} -> "
                                    f"{response.status_code}: {response.text[:300]}")

        def client(number: int) -> None:
            rng = random.Random(number)
            mine: list[str] = []
            with requests.Session() as session:
                session.auth = ADMIN
                step = 0
                while time.monotonic() < deadline:
                    step += 1
                    choice = rng.random()
                    files = {"shared.bin": SHARED,
                             f"own-{number}-{step}.bin": os.urandom(rng.randint(1, 256) * 1024)}
                    if choice < 0.35:
                        target = rng.choice(mine) if mine and rng.random() < 0.7 \
                            else dav.tree.item_handle
                        response = session.get(f"{base}/handle/{target}", timeout=60)
                        record("GET", response)
                        if response.status_code == 200:
                            if int(response.headers["Content-Length"]) != len(response.content):
                                problems.append("GET length mismatch")
                            with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
                                if zf.testzip() is not None:
                                    problems.append("GET returned a damaged zip")
                    elif choice < 0.45:
                        response = session.request("PROPFIND", folder + "/",
                                                   headers={"Depth": "1"}, timeout=60)
                        record("PROPFIND", response)
                    elif choice < 0.7:
                        response = session.post(collection, timeout=60, data=build_zip(
                            f"posted {number}-{step}", files))
                        record("POST", response)
                        if response.status_code == 201:
                            mine.append(response.json()["handle"])
                    elif choice < 0.85:
                        response = session.put(f"{folder}/client-{number}-{step}.zip",
                                               timeout=60,
                                               data=build_zip(f"put {number}-{step}", files))
                        record("PUT new", response)
                        if response.status_code == 201:
                            mine.append(response.json()["handle"])
                    elif mine:
                        target = rng.choice(mine)
                        response = session.put(f"{base}/handle/{target}", timeout=60,
                                               data=build_zip(f"replaced {number}-{step}",
                                                              files))
                        record("PUT replace", response)
            with lock:
                created.extend(mine)

        with ThreadPoolExecutor(CLIENTS) as pool:
            for future in [pool.submit(client, n) for n in range(CLIENTS)]:
                future.result()

        assert problems == [], problems[:10]
        assert server.errors_5xx() == []
        unexpected = {k: v for k, v in statuses.items() if k[1] not in (200, 201, 207)}
        assert unexpected == {}, unexpected
        assert statuses[("POST", 201)] > 0 and statuses[("PUT new", 201)] > 0
        assert statuses[("GET", 200)] > 0

    with dav.repo.context(write=False) as ctx:
        items = {i.handle: i for i in ctx.session.scalars(select(m.Item))}
        for handle in created:
            item = items.get(handle)
            assert item is not None, f"{handle} was announced but does not exist"
            assert item.in_archive and item.workflow_state is m.WorkflowState.ARCHIVED
            names = sorted(b.name for bundle in item.bundles for b in bundle.bitstreams)
            assert len(names) == 2 and "shared.bin" in names, (handle, names)
        assert len(items) == len(created) + 1
    assert list(fixity.check(dav.repo)) == []
    staging = dav.repo.config.path("server.staging_dir")
    assert [p.name for p in staging.iterdir() if not p.name.startswith("deposit-")] == []
