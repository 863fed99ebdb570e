"""davpack: the repository core, the WebDAV/SWORD server and the command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("davpack")
except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
    __version__ = "0+unknown"
