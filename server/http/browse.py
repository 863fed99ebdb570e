"""The browse page: HTML for people with a browser (takes the place of WsgiDAV's
directory browser, after the package middleware).

One page per folder: where it is (breadcrumbs), what it is (title, type, handle, UUID),
a download link per package format available for the object, its members, and -- in a
site, community or collection where the person may add -- an upload form.  The form
posts the chosen file's bytes as they are (a few lines of script, no multipart), so the
server's one ingest path serves it; the receipt is shown in the page.

``?login`` asks the browser for credentials (answers 401 until it sends some).
Everything shown is escaped; the page allows only its own inline script (CSP nonce).
"""

from __future__ import annotations

import html
import secrets
from typing import Any

from wsgidav.mw.base_mw import BaseMiddleware

from server import models as m
from server.errors import AuthenticationRequired
from server.http import urls
from server.http.errors import respond
from server.http.nodes import Node
from server.http.provider import RepositoryProvider
from server.http.resources import (
    BitstreamFile,
    BundleFolder,
    DepositFile,
    ObjectFolder,
    PackageFile,
    PendingFile,
    RootFolder,
)
from server.http.runtime import RequestState
from server.http.wsgi import Environ, StartResponse, WSGIApp, query_pairs
from server.services import authz

MAX_ROWS = 5000

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;
color:#222}
nav{font-size:.9rem;margin-bottom:1rem}nav a{color:#246}
h1{font-size:1.5rem;margin:.2rem 0}.facts{color:#555;font-size:.9rem}
table{border-collapse:collapse;width:100%;margin:1rem 0}
td,th{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;font-size:.92rem}
th{background:#f4f4f4}.kind{color:#777;font-size:.8rem}
.downloads a{margin-right:1rem}fieldset{border:1px solid #ccc;padding:1rem}
#receipt{white-space:pre-wrap;background:#f7f7f7;padding:.5rem;font-size:.85rem}
"""

_SCRIPT = """
document.getElementById('upload').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const file = form.querySelector('input[type=file]').files[0];
  const out = document.getElementById('receipt');
  if (!file) { out.textContent = 'Choose a file first.'; return; }
  const query = new URLSearchParams();
  for (const name of ['package', 'mode']) {
    const value = form.elements[name].value;
    if (value) query.append(name, value);
  }
  if (form.elements.skipWorkflow.checked) query.append('skipWorkflow', 'true');
  out.textContent = 'Uploading ' + file.name + ' (' + file.size + ' bytes)...';
  const safeName = encodeURIComponent(file.name);
  const response = await fetch(form.dataset.target + '?' + query.toString(), {
    method: 'POST', body: file, credentials: 'same-origin',
    headers: {'Content-Type': file.type || 'application/octet-stream',
              'Content-Disposition': "attachment; filename*=UTF-8''" + safeName,
              'Accept': 'application/json'}});
  const text = await response.text();
  out.textContent = response.status + ' ' + response.statusText + '\\n' + text;
  const where = response.headers.get('Location');
  if (where) {
    const link = document.createElement('a');
    link.href = where; link.textContent = 'Open the new object';
    out.appendChild(document.createElement('br')); out.appendChild(link);
  }
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(environ: Environ, path: str, query: str = "") -> str:
    mount = environ.get("davpack.mount", "")
    return _e(mount + urls.quote_path(path) + (f"?{query}" if query else ""))


def _size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


class BrowseMiddleware(BaseMiddleware):
    def __init__(self, wsgidav_app: Any, next_app: WSGIApp, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        method = environ.get("REQUEST_METHOD")
        provider = environ.get("wsgidav.provider")
        if method not in ("GET", "HEAD") or not isinstance(provider, RepositoryProvider):
            return self.next_app(environ, start_response)
        if any(k == "login" for k, _ in query_pairs(environ)) and \
                not environ.get("wsgidav.auth.user_name"):
            return respond(environ, start_response,
                               AuthenticationRequired("log in to continue"))
        resource = provider.get_resource_inst(environ.get("PATH_INFO", "/"), environ)
        if not isinstance(resource, (RootFolder, ObjectFolder, BundleFolder)):
            return self.next_app(environ, start_response)
        nonce = secrets.token_urlsafe(16)
        body = Page(environ, resource, nonce).render().encode("utf-8")
        start_response("200 OK", [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy",
             f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
             "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
             "frame-ancestors 'none'"),
        ])
        return [] if method == "HEAD" else [body]


class Page:
    def __init__(self, environ: Environ, resource: Any, nonce: str) -> None:
        self.environ = environ
        self.resource = resource
        self.nonce = nonce
        self.state = RequestState.of(environ)

    def render(self) -> str:
        resource = self.resource
        site_name = str(self.state.repo.config.get("site.name"))
        node: Node | None = getattr(resource, "node", None)
        title = (node.title if node is not None and node.title else resource.name) or site_name
        parts = [
            "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)} - {_e(site_name)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            self._breadcrumbs(site_name),
            f"<h1>{_e(title)}</h1>",
        ]
        if node is not None:
            parts.append(self._facts(node))
            if isinstance(resource, ObjectFolder) and node.is_object:
                parts.append(self._downloads(node))
        parts.append(self._members())
        if isinstance(resource, ObjectFolder) and node is not None and node.is_container:
            parts.append(self._upload_form(node))
        who = self.state.login
        login = (f"Logged in as {_e(who)}." if who else
                 'Browsing anonymously. <a href="?login">Log in</a>')
        parts.append(f'<p class="facts">{login} WebDAV clients: open '
                     f'<code>{_e(_href(self.environ, "/dav/"))}</code>.</p>')
        parts.append("</body></html>")
        return "\n".join(parts)

    def _breadcrumbs(self, site_name: str) -> str:
        path = self.resource.path.rstrip("/")
        links = [f'<a href="{_href(self.environ, "/dav/")}">{_e(site_name)}</a>']
        if path.startswith("/dav/"):
            segments = path.split("/")[2:]
            walked = "/dav"
            for segment in segments:
                walked += "/" + segment
                links.append(f'<a href="{_href(self.environ, walked + "/")}">{_e(segment)}</a>')
        elif path.startswith("/handle/") or path.startswith("/uuid/"):
            links.append(_e(path))
        return "<nav>" + " / ".join(links) + "</nav>"

    def _facts(self, node: Node) -> str:
        facts = [f'<span class="kind">{_e(node.type.value)}</span>']
        if node.handle:
            canonical = urls.object_path(node.handle)
            facts.append(f'handle <a href="{_href(self.environ, canonical + "/")}">'
                         f"{_e(node.handle)}</a>")
        facts.append(f"UUID {_e(node.id)}")
        facts.append(f"modified {_e(node.last_modified.strftime('%Y-%m-%d %H:%M:%S'))} UTC")
        if node.withdrawn:
            facts.append("<strong>withdrawn</strong>")
        return '<p class="facts">' + " &middot; ".join(facts) + "</p>"

    def _downloads(self, node: Node) -> str:
        registry = self.state.runtime.registry
        target = urls.object_path(node.handle, node.id)
        links = []
        for cls in registry.disseminators_for(node.type):
            query = "package=" + urls.quote_path(cls.name)
            links.append(f'<a class="download" href="{_href(self.environ, target, query)}" '
                         f'download>{_e(cls.name)} <span class="kind">'
                         f"({_e(cls.mime_types[0])})</span></a>")
        if not links:
            return '<p class="downloads">No package format can be made for this object.</p>'
        return '<p class="downloads">Download: ' + "".join(links) + "</p>"

    def _members(self) -> str:
        members = self.resource.get_member_list()
        if not members:
            return "<p>This folder is empty.</p>"
        rows = ['<table><thead><tr><th>Name</th><th>Kind</th><th>Handle</th><th>Size</th>'
                "</tr></thead><tbody>"]
        for member in members[:MAX_ROWS]:
            rows.append(self._row(member))
        rows.append("</tbody></table>")
        if len(members) > MAX_ROWS:
            rows.append(f"<p>Showing the first {MAX_ROWS} of {len(members)} entries; use a "
                        "WebDAV client for the rest.</p>")
        return "\n".join(rows)

    def _row(self, member: Any) -> str:
        name = member.name
        if member.is_collection:
            href = _href(self.environ, member.path.rstrip("/") + "/")
            label = f'<a href="{href}">{_e(name)}/</a>'
        else:
            href = _href(self.environ, member.path)
            label = f'<a href="{href}" download>{_e(name)}</a>'
        node: Node | None = getattr(member, "node", None)
        if isinstance(member, PackageFile):
            kind = "package"
        elif isinstance(member, DepositFile):
            kind = "uploaded package"
        elif isinstance(member, PendingFile):
            kind = "pending upload"
        elif isinstance(member, BitstreamFile):
            kind = (node.mime_type if node is not None else None) or "file"
        elif isinstance(member, BundleFolder):
            kind = "bundle"
        elif node is not None:
            kind = node.type.value.lower()
        else:
            kind = ""
        handle = node.handle if node is not None and node.handle and not isinstance(
            member, (BitstreamFile, BundleFolder)) else ""
        size = _size(member.get_content_length()) if isinstance(member, BitstreamFile) else ""
        return (f"<tr><td>{label}</td><td class=\"kind\">{_e(kind or '')}</td>"
                f"<td>{_e(handle)}</td><td>{_e(size)}</td></tr>")

    def _upload_form(self, node: Node) -> str:
        ctx = self.state.read()
        obj = ctx.session.get(m.DSpaceObject, node.id)
        if obj is None or not authz.allowed(ctx, obj, m.Action.ADD):
            return ""
        ingesters = [c for c in self.state.runtime.registry.ingesters()
                     if node.type in c.ingest_parent_types]
        if not ingesters:
            return ""
        options = ['<option value="">recognise from the content</option>']
        options += [f'<option value="{_e(c.name)}">{_e(c.name)}</option>' for c in ingesters]
        target = _href(self.environ, urls.object_path(node.handle, node.id))
        return (
            f'<form id="upload" data-target="{target}"><fieldset>'
            "<legend>Deposit a package here</legend>"
            '<p><input type="file" name="file" required></p>'
            f'<p><label>Package <select name="package">{"".join(options)}</select></label> '
            '<label>Mode <select name="mode"><option value="submit">submit (new handle)'
            '</option><option value="restore">restore (handles from the package)</option>'
            "</select></label> "
            '<label><input type="checkbox" name="skipWorkflow"> skip workflow</label></p>'
            '<p><button type="submit">Upload</button></p>'
            '<div id="receipt" aria-live="polite"></div></fieldset></form>'
            f'<script nonce="{_e(self.nonce)}">{_SCRIPT}</script>')
