"""PackageParameters: the multi-valued options every packager receives.

``?dmd=MODS&dmd=DIM`` on a URL and ``-o dmd=MODS -o dmd=DIM`` on the command line give the
same object.  Names are case-sensitive (as DSpace's); values are strings, read through typed
getters that raise :class:`UnknownOption`-style errors naming the option.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from packagers.errors import PackageError, UnknownOption
from server.errors import Detail

_TRUE = {"true", "yes", "on", "1", ""}
_FALSE = {"false", "no", "off", "0"}


class PackageParameters(Mapping[str, list[str]]):
    """An ordered multimap of option name → values."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def from_query(cls, query: str, *, reserved: Iterable[str] = ()) -> PackageParameters:
        """Parse a URL query string, leaving out ``reserved`` names (e.g. ``package``)."""
        skip = set(reserved)
        return cls((k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in skip)

    @classmethod
    def from_cli(cls, options: Iterable[str]) -> PackageParameters:
        """``-o name=value`` pairs; a bare ``-o name`` means ``name=true`` (DSpace's presence
        flags such as ``passwords``)."""
        params = cls()
        for option in options:
            name, sep, value = option.partition("=")
            params.add(name.strip(), value if sep else "true")
        return params

    def add(self, name: str, value: str) -> None:
        if not name:
            raise PackageError("an option needs a name", [Detail("empty option name")])
        self._values.setdefault(name, []).append(value)

    def set(self, name: str, value: str) -> None:
        self._values[name] = [value]

    def copy(self) -> PackageParameters:
        clone = PackageParameters()
        for name, values in self._values.items():
            clone._values[name] = list(values)
        return clone

    # Mapping protocol
    def __getitem__(self, name: str) -> list[str]:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PackageParameters({self._values!r})"

    # Typed getters
    def get_str(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name)
        return values[0] if values else default

    def get_list(self, name: str) -> list[str]:
        """All values, with comma-separated values split (``a,b`` and ``a&b`` are equal)."""
        out: list[str] = []
        for value in self._values.get(name, []):
            out.extend(part.strip() for part in value.split(",") if part.strip())
        return out

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self.get_str(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise PackageError(f"option {name} must be true or false",
                           [Detail("not a boolean", field=name, expected="true|false",
                                   found=value)])

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.get_str(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise PackageError(f"option {name} must be a whole number",
                               [Detail("not a number", field=name, found=value)]) from None

    def get_date(self, name: str) -> datetime | None:
        """An ISO-8601 date or date-time, as naive UTC (the model's clock)."""
        value = self.get_str(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PackageError(f"option {name} must be an ISO-8601 date",
                               [Detail("not an ISO-8601 date", field=name,
                                       expected="e.g. 2024-05-01T12:00:00Z",
                                       found=value)]) from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed

    def check_known(self, known: Iterable[str], packager: str) -> None:
        """Raise :class:`UnknownOption` for any option not in ``known``."""
        allowed = set(known)
        unknown = [name for name in self._values if name not in allowed]
        if unknown:
            listing = ", ".join(sorted(allowed)) or "none"
            raise UnknownOption(
                f"packager {packager} has no option {', '.join(unknown)} (it knows: {listing})",
                [Detail("unknown option", field=name, expected=listing) for name in unknown])
