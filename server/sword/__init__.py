"""SWORD v2 deposit (AtomPub profile) on davpack's packagers, store and policies.

``make_sword_app(repo, registry, fallback=app)`` is the WSGI application; every SWORD IRI
lies below ``sword.root`` (default ``/sword``), whose service document URL
:func:`service_document_url` gives.  See :mod:`server.sword.app` for the request path,
:mod:`server.sword.deposit` for what each operation does to the repository.
"""

from server.sword.app import SwordApp, make_sword_app, service_document_url

__all__ = ["SwordApp", "make_sword_app", "service_document_url"]
