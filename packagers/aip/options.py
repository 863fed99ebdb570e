"""The AIP packager's options: declared once (DSpace's table, seeds/001 "Additional Packager
Options", with its per-mode defaults) and resolved into typed settings per operation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from packagers.base import BOTH, DISSEMINATE, INGEST, IngestRequest, Mode, Option
from packagers.errors import PackageError
from packagers.params import PackageParameters
from server.errors import Detail

OPTIONS: tuple[Option, ...] = (
    Option("createMetadataFields",
           "Create metadata fields the registry lacks (their schema must exist: a missing "
           "schema always fails the ingest). false: an unknown field fails the ingest.",
           default="true", applies_to=INGEST),
    Option("filterBundles",
           "Bundles left out of item AIPs, comma-separated (e.g. 'TEXT, THUMBNAIL'); a "
           "leading '+' lists the only bundles to include instead ('+ORIGINAL, LICENSE'). "
           "Default: every bundle. Cannot be combined with includeBundles.",
           default=None, applies_to=DISSEMINATE),
    Option("ignoreHandle",
           "true: mint new handles instead of restoring the package's. Not for replace.",
           default="false", defaults={"submit": "true", "restore": "false",
                                      "replace": "false"}, applies_to=INGEST),
    Option("ignoreParent",
           "true: ingest under the parent given with -p instead of the package's parent "
           "(a restore given -p behaves as if this were true).",
           default="false", defaults={"submit": "true", "restore": "false",
                                      "replace": "false"}, applies_to=INGEST),
    Option("includeBundles",
           "Bundles included in item AIPs, comma-separated, or 'all'. Cannot be combined "
           "with filterBundles.", default="all", applies_to=DISSEMINATE),
    Option("manifestOnly",
           "Export: a bare mets.xml whose files are referenced by URL (content files are "
           "not included). Ingest: the package is such a mets.xml; its files must already "
           "be in this repository (nothing is fetched from the network).",
           default="false", applies_to=BOTH),
    Option("passwords",
           "Include people's password hashes in the Site AIP (DSPACE-ROLES), so a restore "
           "keeps them. Presence is enough: '-o passwords'.",
           default="false", applies_to=DISSEMINATE),
    Option("skipIfParentMissing",
           "Skip (with a warning and a 'skipped' receipt) a package whose parent does not "
           "exist, instead of failing the whole ingest.", default="false", applies_to=INGEST),
    Option("unauthorized",
           "What to do with bundles and bitstreams the exporting person may not read: "
           "'skip' leaves them out, 'zero' writes a zero-length placeholder file (bundles "
           "are still refused); unset: refuse the export.", default=None,
           applies_to=DISSEMINATE),
    Option("updatedAfter",
           "ISO-8601 date-time: a hierarchy export (-a) writes only item AIPs modified after "
           "it; site, community and collection AIPs are always written.", default=None,
           applies_to=DISSEMINATE),
    Option("validate",
           "Validate every mets.xml against the XML schemas in packagers.schemas_dir "
           "(never downloaded). Export always checks structure; a schema check runs when "
           "schemas are configured, and an explicit 'true' requires them.",
           default="false", defaults={"disseminate": "true", "submit": "false",
                                      "restore": "false", "replace": "false"},
           applies_to=BOTH),
    Option("dmd",
           "Export: descriptive metadata sections to write, in order (repeatable or "
           "comma-separated; MODS, DIM; default MODS, DIM). Ingest: the dmdSec type to read "
           "(default DIM, else MODS).", default=None, applies_to=BOTH, multiple=True),
    Option("all",
           "Disseminate: one zip holding the AIP of the object and of every descendant, "
           "named as -a names files (a whole-site backup as one download).",
           default="false", applies_to=DISSEMINATE),
)

_BY_NAME = {o.name: o for o in OPTIONS}
DMD_TYPES = ("MODS", "DIM")


def _bool(params: PackageParameters, name: str, mode: str) -> bool:
    default = _BY_NAME[name].default_for(mode)
    return params.get_bool(name, (default or "false").lower() == "true")


@dataclass(frozen=True)
class ExportOptions:
    dmd: tuple[str, ...]
    include_bundle: Callable[[str], bool]
    manifest_only: bool
    passwords: bool
    unauthorized: str | None
    updated_after: datetime | None
    validate: bool
    validate_explicit: bool
    all: bool
    now: datetime | None

    @classmethod
    def from_params(cls, params: PackageParameters, now: datetime | None) -> ExportOptions:
        dmd = tuple(v.upper() for v in params.get_list("dmd")) or DMD_TYPES
        unknown = [v for v in dmd if v not in DMD_TYPES]
        if unknown:
            raise PackageError(f"option dmd: unknown metadata type {', '.join(unknown)}",
                               [Detail("unknown dmd type", field="dmd",
                                       expected=", ".join(DMD_TYPES), found=v)
                                for v in unknown])
        unauthorized = params.get_str("unauthorized")
        if unauthorized is not None:
            unauthorized = unauthorized.strip().lower() or None
            if unauthorized not in (None, "skip", "zero"):
                raise PackageError("option unauthorized must be 'skip' or 'zero'",
                                   [Detail("bad value", field="unauthorized",
                                           expected="skip|zero", found=unauthorized)])
        return cls(dmd=dmd, include_bundle=bundle_filter(params),
                   manifest_only=_bool(params, "manifestOnly", "disseminate"),
                   passwords=_bool(params, "passwords", "disseminate"),
                   unauthorized=unauthorized,
                   updated_after=params.get_date("updatedAfter"),
                   validate=_bool(params, "validate", "disseminate"),
                   validate_explicit="validate" in params,
                   all=_bool(params, "all", "disseminate"), now=now)


def bundle_filter(params: PackageParameters) -> Callable[[str], bool]:
    """``filterBundles`` / ``includeBundles`` as a predicate on bundle names."""
    filter_values = params.get_list("filterBundles")
    include_given = "includeBundles" in params
    if filter_values and include_given:
        raise PackageError("options filterBundles and includeBundles cannot be combined",
                           [Detail("conflicting options", field="includeBundles"),
                            Detail("conflicting options", field="filterBundles")])
    if filter_values:
        if filter_values[0].startswith("+"):
            wanted = {filter_values[0][1:].strip(), *filter_values[1:]} - {""}
            return lambda name: name in wanted
        excluded = set(filter_values)
        return lambda name: name not in excluded
    include = params.get_list("includeBundles")
    if not include or any(v.lower() in ("all", "+all") for v in include):
        return lambda name: True
    wanted = {v.lstrip("+") for v in include}
    return lambda name: name in wanted


@dataclass(frozen=True)
class IngestOptions:
    create_fields: bool
    ignore_handle: bool
    ignore_parent: bool
    manifest_only: bool
    skip_if_parent_missing: bool
    validate: bool
    validate_explicit: bool
    dmd: str | None

    @classmethod
    def from_request(cls, request: IngestRequest) -> IngestOptions:
        params = request.params
        mode = request.mode.value
        ignore_handle = _bool(params, "ignoreHandle", mode)
        if "ignoreParent" in params:
            ignore_parent = params.get_bool("ignoreParent")
        else:
            ignore_parent = request.mode is Mode.SUBMIT or request.parent is not None
        dmd = params.get_list("dmd")
        return cls(create_fields=_bool(params, "createMetadataFields", mode),
                   ignore_handle=ignore_handle and request.mode is not Mode.REPLACE,
                   ignore_parent=ignore_parent,
                   manifest_only=_bool(params, "manifestOnly", mode),
                   skip_if_parent_missing=_bool(params, "skipIfParentMissing", mode),
                   validate=_bool(params, "validate", mode),
                   validate_explicit="validate" in params,
                   dmd=dmd[0].upper() if dmd else None)
