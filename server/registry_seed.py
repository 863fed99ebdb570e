"""The metadata schemas and fields a new repository starts with.

The ``dc`` list follows DSpace's registry of qualified Dublin Core (the fields DSpace's own
submission, AIP and SAF code write); ``dcterms`` holds the DCMI terms; ``dspace`` the
fields DSpace keeps for entities and licences; ``local`` starts empty for site-specific
fields.  Anything else must be created on purpose (``createMetadataFields``).
"""

from __future__ import annotations

SCHEMAS: dict[str, str] = {
    "dc": "http://dublincore.org/documents/dcmi-terms/",
    "dcterms": "http://purl.org/dc/terms/",
    "local": "http://dspace.org/local",
    "dspace": "http://dspace.org/dspace",
    "eperson": "http://dspace.org/eperson",
}

_DC = """
contributor contributor.advisor contributor.author contributor.editor contributor.illustrator
contributor.other coverage.spatial coverage.temporal creator date date.accessioned
date.available date.copyright date.created date.issued date.submitted date.updated
description description.abstract description.provenance description.sponsorship
description.statementofresponsibility description.tableofcontents description.uri
description.version format format.extent format.medium format.mimetype format.internal
format.supportlevel identifier identifier.citation identifier.govdoc identifier.isbn
identifier.issn identifier.sici identifier.ismn identifier.other identifier.uri
identifier.doi language language.iso language.rfc3066 provenance publisher relation
relation.haspart relation.hasversion relation.isbasedon relation.isformatof relation.ispartof
relation.ispartofseries relation.isreferencedby relation.isreplacedby relation.isversionof
relation.replaces relation.requires relation.uri rights rights.accessRights rights.holder
rights.license rights.uri source source.uri subject subject.classification subject.ddc
subject.lcc subject.lcsh subject.mesh subject.other title title.alternative type
relation.isPartOf relation.isReferencedBy
"""

_DCTERMS = """
abstract accessRights accrualMethod accrualPeriodicity accrualPolicy alternative audience
available bibliographicCitation conformsTo contributor coverage created creator date
dateAccepted dateCopyrighted dateSubmitted description educationLevel extent format
hasFormat hasPart hasVersion identifier instructionalMethod isFormatOf isPartOf
isReferencedBy isReplacedBy isRequiredBy issued isVersionOf language license mediator
medium modified provenance publisher references relation replaces requires rights
rightsHolder source spatial subject tableOfContents temporal title type valid
"""

_DSPACE = """
entity.type iiif.enabled iiif.search.enabled iiif.label iiif.toc iiif.image.width
iiif.image.height object.owner agreements.cookies agreements.end-user
"""

_EPERSON = "firstname lastname phone language"


def _parse(text: str) -> list[tuple[str, str | None]]:
    fields = []
    for token in text.split():
        element, _, qualifier = token.partition(".")
        fields.append((element, qualifier or None))
    return fields


FIELDS: dict[str, list[tuple[str, str | None]]] = {
    "dc": _parse(_DC),
    "dcterms": _parse(_DCTERMS),
    "local": [],
    "dspace": _parse(_DSPACE),
    "eperson": _parse(_EPERSON),
}
