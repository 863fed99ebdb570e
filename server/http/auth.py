"""HTTP Basic authentication against the repository's EPeople.

* No ``Authorization`` header: the request goes on anonymously and the resource
  policies decide; an operation that needs a person answers 401 with a Basic challenge
  (WebDAV clients then retry with credentials), one that needs more rights 403.
* Valid Basic credentials (e-mail or netid, password; hashes restored from DSpace Site
  AIPs verify too): the person is the actor of every unit of work of the request.
* Anything else (wrong password, another scheme, a malformed header): 401 with the
  challenge, never a fallback to anonymous and never a 500.
* Shares that are not the repository (a plain filesystem share used for conformance
  tests) are for administrators only.

Basic sends the password with every request: serve over TLS (``server.ssl_certificate``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.http_authenticator import HTTPAuthenticator

from server.errors import AuthenticationRequired, Detail, PermissionDenied
from server.http import errors as http_errors
from server.http.runtime import RequestState
from server.http.wsgi import Environ, StartResponse
from server.services import authz, people

log = logging.getLogger(__name__)

REALM = "davpack"
MAX_AUTHORIZATION = 4096


class RepositoryDomainController(BaseDomainController):
    """WsgiDAV's view of our users (used for realm and start-up reporting only; the
    checking itself is in :class:`Authenticator`)."""

    def __init__(self, wsgidav_app: Any, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, config)

    def __str__(self) -> str:
        return "RepositoryDomainController (EPeople, HTTP Basic)"

    def get_domain_realm(self, path_info: str, environ: Environ | None) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: Environ | None) -> bool:
        return False

    def is_share_anonymous(self, path_info: str) -> bool:
        return False

    def basic_auth_user(self, realm: str, user_name: str, password: str,
                        environ: Environ) -> bool:
        return False

    def supports_http_digest_auth(self) -> bool:
        return False


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(login, password)`` from a Basic ``Authorization`` value; None if malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
    login, sep, password = text.partition(":")
    if not sep or not login:
        return None
    return login, password


class Authenticator(HTTPAuthenticator):
    """Replaces WsgiDAV's authenticator logic (Basic only, robust parsing, JSON 401s,
    no ``?logout`` quirk) while keeping its place and environ keys."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        environ["wsgidav.auth.realm"] = REALM
        environ["wsgidav.auth.user_name"] = ""
        environ["wsgidav.auth.roles"] = None
        environ["wsgidav.auth.permissions"] = None
        state = RequestState.of(environ)
        header = environ.get("HTTP_AUTHORIZATION")
        repository_share = _is_repository(environ)
        if header is None:
            if repository_share:
                return self.next_app(environ, start_response)
            return self._refuse(environ, start_response, AuthenticationRequired(
                "this share needs an administrator's credentials"))
        credentials = parse_basic(header) if len(header) <= MAX_AUTHORIZATION else None
        if credentials is None:
            return self._refuse(environ, start_response, AuthenticationRequired(
                "only HTTP Basic authentication is accepted",
                [Detail("unsupported or malformed Authorization header",
                        field="Authorization")]))
        login, password = credentials
        with state.repo.context(write=False) as ctx:
            person = people.authenticate(ctx, login, password)
            admin = person is not None and authz.is_admin(ctx, person)
            person_id = person.id if person is not None else None
        if person_id is None:
            log.info("authentication failed for %r", login[:100])
            return self._refuse(environ, start_response, AuthenticationRequired(
                "unknown user or wrong password",
                [Detail("authentication failed", field="Authorization")]))
        state.actor = person_id
        state.login = login
        environ["wsgidav.auth.user_name"] = login
        environ["wsgidav.auth.roles"] = ["admin"] if admin else ["user"]
        if not repository_share and not admin:
            return self._refuse(environ, start_response, PermissionDenied(
                "this share is for administrators only"))
        return self.next_app(environ, start_response)

    @staticmethod
    def _refuse(environ: Environ, start_response: StartResponse,
                error: Exception) -> list[bytes]:
        return http_errors.respond(environ, start_response, error)


def _is_repository(environ: Environ) -> bool:
    from server.http.provider import RepositoryProvider

    provider = environ.get("wsgidav.provider")
    return provider is None or isinstance(provider, RepositoryProvider)
