"""Assemble the WSGI application from the repository."""

from __future__ import annotations

from typing import Any

from server.context import Repository
from server.http.introspection import Introspection, StartResponse, WSGIApp, json_response


def _not_found(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    return json_response(start_response, "404 Not Found",
                         {"error": f"no such resource {environ.get('PATH_INFO', '')}"})


def make_app(repo: Repository) -> WSGIApp:
    return Introspection(_not_found, repo)
