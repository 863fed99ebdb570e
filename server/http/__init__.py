"""The HTTP side: WSGI application, WebDAV provider, SWORD, introspection."""
