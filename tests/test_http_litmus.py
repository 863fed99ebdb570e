"""litmus, the WebDAV conformance suite, against the running server.

1. A plain WsgiDAV FilesystemProvider share mounted in the same application (same
   cheroot settings, error layer, authentication, lock and property managers): 100 %.
   This validates our stack, not the repository's semantics.
2. The repository share (``/dav/``), where litmus's generic files are refused because
   they are not packages.  The per-group result is pinned below; every failure must be
   one of the deliberate refusals listed (415 for a body that is not a package, 405 for
   a folder inside a collection, and what follows from those), and the server must not
   answer a single 5xx.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import ADMIN, Dav, DavServer, running_server

pytest_plugins = ("http_fixtures",)

LITMUS_GROUPS = ("basic", "copymove", "props", "locks", "http")

# group: (passed, run) on the repository share
PINNED = {"basic": (12, 14), "copymove": (5, 10), "props": (9, 12), "locks": (31, 41),
          "http": (4, 4)}

# every failing litmus test on the repository share, with the status it got
EXPECTED_FAILURES = {
    ("basic", "put_get"): "415",
    ("basic", "put_get_utf8_segment"): "415",
    ("copymove", "copy_init"): "415",
    ("copymove", "copy_coll"): "415",
    ("copymove", "copy_shallow"): "405",
    ("copymove", "move"): "415",
    ("copymove", "move_coll"): "415",
    ("props", "propinit"): "415",
    ("props", "propmanyns"): "404",
    ("locks", "put"): "415",
    ("locks", "owner_modify"): "415",
    ("locks", "copy"): "403",
    ("locks", "cond_put"): "415",
    ("locks", "cond_put_with_not"): "415",
    ("locks", "complex_cond_put"): "415",
    ("locks", "lock_collection"): "415",
    ("locks", "indirect_refresh"): "400",
}

_SUMMARY = re.compile(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed")
_FAIL = re.compile(r"^\s*\d+\.\s+(\w+)\.*\s+\d+\.\s+\w+\.*\s+FAIL \((.*?)\)$",
                   re.MULTILINE | re.DOTALL)


def _litmus(url: str, workdir: Path) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]],
                                              str]:
    litmus = shutil.which("litmus")
    if litmus is None:
        pytest.skip("litmus is not installed (bash .ci/system-deps installs it)")
    out = []
    failures: list[tuple[str, str]] = []
    results: dict[str, tuple[int, int]] = {}
    for group in LITMUS_GROUPS:
        run = subprocess.run([litmus, "-k", url, ADMIN[0], ADMIN[1]], capture_output=True,
                             timeout=300, cwd=workdir, env={"TESTS": group, "HOME": str(workdir),
                                                            "PATH": "/usr/bin:/bin"})
        text = run.stdout.decode("utf-8", "replace").replace("\x00", "")
        out.append(text)
        for name, passed, ran in ((m[1], int(m[3]), int(m[2])) for m in _SUMMARY.finditer(text)):
            results[name] = (passed, ran)
        failures.extend((group, f"{name}: {detail}") for name, detail in _FAIL.findall(text))
    return results, failures, "\n".join(out)


@pytest.fixture
def litmus_server(dav: Dav, tmp_path: Path) -> Iterator[DavServer]:
    from wsgidav.fs_dav_provider import FilesystemProvider

    from server.http.app import make_app

    share = tmp_path / "litmus-share"
    share.mkdir()
    app = make_app(dav.repo, dav.registry,
                   extra_shares={"/-/litmus-fs": FilesystemProvider(str(share))})
    with running_server(dav.repo, app, dav.tree, threads=4) as server:
        yield server


@pytest.mark.slow
def test_litmus_on_a_filesystem_share_passes_everything(litmus_server: DavServer,
                                                        tmp_path: Path) -> None:
    results, failures, text = _litmus(f"{litmus_server.url}/-/litmus-fs/", tmp_path)
    assert set(results) == set(LITMUS_GROUPS), text
    for group, (passed, ran) in results.items():
        assert passed == ran, (group, failures, text[-3000:])
    assert litmus_server.errors_5xx() == []


@pytest.mark.slow
def test_litmus_on_the_repository_share_is_pinned(litmus_server: DavServer,
                                                  tmp_path: Path) -> None:
    results, failures, _text = _litmus(f"{litmus_server.url}/dav/", tmp_path)
    assert results == PINNED, (results, failures)
    seen = set()
    for group, line in failures:
        name, _, detail = line.partition(": ")
        expected = EXPECTED_FAILURES.get((group, name))
        assert expected is not None, f"unexpected litmus failure {group}/{line}"
        assert expected in detail, f"{group}/{name} failed differently: {detail}"
        seen.add((group, name))
    assert seen == set(EXPECTED_FAILURES)
    assert litmus_server.errors_5xx() == []
    # what litmus leaves (its last group does not clean up) is an empty folder tree,
    # which DELETE removes
    import requests

    gone = requests.delete(f"{litmus_server.url}/dav/litmus/", auth=ADMIN, timeout=30)
    assert gone.status_code in (204, 404)
    from server.services import dav_support, objects

    with litmus_server.repo.context(write=False) as ctx:
        tops = dav_support.child_containers(ctx, objects.site(ctx))
        assert [objects.name_of(c) for c in tops] == ["Community A"]
