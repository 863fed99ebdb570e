"""Find packagers by name, SWORD packaging URI, content type, or by sniffing the package.

Packagers are entry points of the group ``davpack.packagers`` (name = canonical packager
name, value = ``module:Class``), loaded lazily: looking one up by its canonical name imports
only that module.  :meth:`Registry.check` loads them all and fails on duplicate names or
aliases; the server and the CLI call it at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from packagers.base import Disseminator, Ingester, Packager, PackageSource
from packagers.errors import AmbiguousPackage, PackageError, UnknownPackager, UnsupportedOperation
from server.errors import Detail
from server.models import ObjectType

GROUP = "davpack.packagers"

# Content types that say "some zip / some bytes": the content decides.
GENERIC_TYPES = frozenset({
    "application/zip", "application/x-zip", "application/x-zip-compressed",
    "application/octet-stream", "binary/octet-stream", "application/x-tar", "application/gzip",
    "application/x-gzip", "application/x-gtar", "",
})


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class Registry:
    def __init__(self, eps: Iterable[EntryPoint] | None = None) -> None:
        self._entry_points = {ep.name.lower(): ep for ep in
                              (entry_points(group=GROUP) if eps is None else eps)}
        self._loaded: dict[str, type[Packager]] = {}
        self._all_loaded = False

    def _load(self, key: str) -> type[Packager]:
        if key not in self._loaded:
            cls = self._entry_points[key].load()
            if not (isinstance(cls, type) and issubclass(cls, Packager)):
                raise PackageError(f"entry point {self._entry_points[key].value} is not a "
                                   "Packager class")
            self._loaded[key] = cls
        return self._loaded[key]

    def all(self) -> list[type[Packager]]:
        """Every installed packager, loaded, in name order."""
        return [self._load(key) for key in sorted(self._entry_points)]

    def names(self) -> list[str]:
        return sorted(ep.name for ep in self._entry_points.values())

    def check(self) -> None:
        """Load everything; raise if two packagers answer to the same name or alias."""
        seen: dict[str, str] = {}
        problems = []
        for cls in self.all():
            for label in (cls.name, *cls.aliases):
                key = label.lower()
                if key in seen and seen[key] != cls.__qualname__:
                    problems.append(Detail("duplicate packager name", field=label,
                                           found=f"{seen[key]} and {cls.__qualname__}"))
                seen[key] = cls.__qualname__
        if problems:
            raise PackageError("packager names clash: " + ", ".join(p.field or "" for p in
                                                                    problems), problems)
        self._all_loaded = True

    def get(self, name: str) -> type[Packager]:
        key = name.strip().lower()
        if key in self._entry_points:
            return self._load(key)
        for cls in self.all():
            if key in (alias.lower() for alias in cls.aliases):
                return cls
        installed = ", ".join(self.names()) or "none"
        raise UnknownPackager(f"no packager named {name!r} is installed (installed: "
                              f"{installed})",
                              [Detail("unknown packager", field="package", found=name,
                                      expected=installed)])

    def ingester(self, name: str) -> type[Ingester]:
        cls = self.get(name)
        if not issubclass(cls, Ingester):
            raise UnsupportedOperation(f"packager {cls.name} cannot ingest",
                                       [Detail("not an ingester", field="package",
                                               found=cls.name,
                                               expected=", ".join(self.ingester_names()))])
        return cls

    def disseminator(self, name: str) -> type[Disseminator]:
        cls = self.get(name)
        if not issubclass(cls, Disseminator):
            raise UnsupportedOperation(f"packager {cls.name} cannot disseminate",
                                       [Detail("not a disseminator", field="package",
                                               found=cls.name,
                                               expected=", ".join(self.disseminator_names()))])
        return cls

    def ingesters(self) -> list[type[Ingester]]:
        return [c for c in self.all() if issubclass(c, Ingester)]

    def disseminators(self) -> list[type[Disseminator]]:
        return [c for c in self.all() if issubclass(c, Disseminator)]

    def ingester_names(self) -> list[str]:
        return [c.name for c in self.ingesters()]

    def disseminator_names(self) -> list[str]:
        return [c.name for c in self.disseminators()]

    def disseminators_for(self, obj_type: ObjectType) -> list[type[Disseminator]]:
        return [c for c in self.disseminators() if obj_type in c.disseminate_types]

    def by_sword_packaging(self, uri: str) -> type[Ingester] | None:
        wanted = uri.strip()
        for cls in self.ingesters():
            if wanted in cls.sword_packaging:
                return cls
        return None

    def sword_packaging_uris(self) -> list[str]:
        uris: list[str] = []
        for cls in self.ingesters():
            uris.extend(u for u in cls.sword_packaging if u not in uris)
        return uris

    def choose_ingester(self, *, name: str | None = None, sword_packaging: str | None = None,
                        content_type: str | None = None, source: PackageSource | None = None,
                        parent_type: ObjectType | None = None) -> type[Ingester]:
        """Pick the ingester: explicit name, then SWORD URI, then content type, then sniff."""
        if name:
            return self.ingester(name)
        if sword_packaging:
            found = self.by_sword_packaging(sword_packaging)
            if found is None:
                accepted = ", ".join(self.sword_packaging_uris())
                raise UnknownPackager(f"no packager implements SWORD packaging {sword_packaging}",
                                      [Detail("unknown packaging", field="Packaging",
                                              found=sword_packaging, expected=accepted)])
            return found
        candidates = self.ingesters()
        if parent_type is not None:
            candidates = [c for c in candidates if parent_type in c.ingest_parent_types]
        base = _base_type(content_type)
        if base not in GENERIC_TYPES:
            typed = [c for c in candidates if base in (t.lower() for t in c.mime_types)]
            if len(typed) == 1:
                return typed[0]
            if typed:
                candidates = typed
        if source is None:
            raise AmbiguousPackage("cannot tell which packager reads this package",
                                   [Detail("no content to sniff", field="Content-Type",
                                           found=content_type)])
        claimed = [c for c in candidates if c.sniff(source)]
        if len(claimed) == 1:
            return claimed[0]
        names = ", ".join(c.name for c in (claimed or candidates))
        if claimed:
            message = f"the package could be any of {names}: choose one with ?package=NAME"
        else:
            message = (f"no installed packager recognises {source.label}; "
                       f"choose one of {names} with ?package=NAME")
        raise AmbiguousPackage(message, [Detail("cannot choose a packager", file=source.label,
                                                expected=names, found=content_type)])


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry of installed packagers."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def markdown_table(registry: Registry) -> str:
    """The README's packager table, generated from the declarations (a test compares)."""
    lines = ["| name | aliases | ingests into | disseminates | options | SWORD packaging |",
             "|---|---|---|---|---|---|"]
    for cls in registry.all():
        record = cls.describe()
        into = ", ".join(t.lower() for t in record.get("ingest_parent_types", [])) or "—"
        out = ", ".join(t.lower() for t in record.get("disseminate_types", [])) or "—"
        options = ", ".join(f"`{o['name']}`" for o in record["options"]) or "—"
        sword = "<br>".join(f"`{u}`" for u in record["sword_packaging"]) or "—"
        aliases = ", ".join(record["aliases"]) or "—"
        lines.append(f"| `{record['name']}` | {aliases} | {into} | {out} | {options} | {sword} |")
    return "\n".join(lines) + "\n"
