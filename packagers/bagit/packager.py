"""BAGIT: BagIt bags (RFC 8493; versions 0.93-1.0 read, 1.0 written) as items.

See :mod:`packagers.bagit.bag` for validation, :mod:`packagers.bagit.describe` for how a
bag becomes an item and :mod:`packagers.bagit.writer` for the bags this packager writes.
"""

from __future__ import annotations

import re
import tarfile
import uuid
from pathlib import Path
from typing import BinaryIO, ClassVar, cast

from packagers import itemkit
from packagers.bagit.bag import (
    HashingReader,
    check_directory,
    extract_bag,
    open_bag,
    refusal,
    verify_files,
)
from packagers.bagit.describe import (
    LOCAL_PREFIX,
    drop_install_fields,
    metadata_inputs,
    plan_item,
)
from packagers.bagit.writer import build_layout
from packagers.base import (
    INGEST,
    Disseminator,
    Ingester,
    IngestRequest,
    IngestResult,
    Operation,
    Option,
    Package,
    PackageSource,
)
from packagers.params import PackageParameters
from server import models as m
from server.archive import SafeArchive
from server.errors import DavpackError, Detail
from server.services import authz

SWORD_BAGIT = "http://purl.org/net/sword/package/BagIt"
STORE_ALGORITHMS = ("md5", "sha256")


class BagItPackager(Ingester, Disseminator):
    name = "BAGIT"
    aliases = ("BagIt",)
    description = ("BagIt bags (zip, tar or a directory; BagIt 0.93-1.0) validated and "
                   "ingested as items; items disseminated as BagIt 1.0 zips with MD5 and "
                   "SHA-256 manifests.")
    mime_types = ("application/zip", "application/x-tar", "application/gzip",
                  "application/x-gzip", "application/x-gtar", "application/x-bzip2",
                  "application/x-xz")
    extension = "zip"
    sword_packaging = (SWORD_BAGIT,)
    roundtrip_exact = False
    roundtrip_note = (
        "A bag names its item and its time: the top-level folder and External-Identifier "
        "carry the handle, Bagging-Date and every zip entry's time the item's last change, "
        "dublin_core.xml the handle URI, accession dates and provenance that submitting "
        "re-creates; the tag manifests follow.  The payload, its manifests and the other "
        "metadata come back identical.")
    ingest_parent_types = frozenset({m.ObjectType.COLLECTION})
    disseminate_types = frozenset({m.ObjectType.ITEM})
    options: ClassVar[tuple[Option, ...]] = (
        Option("createMetadataFields",
               "Create metadata fields the registry lacks (replication AIP bags may carry "
               "local fields); local.bagit.* fields for bag-info labels are always created.",
               default="false", applies_to=INGEST),
    )

    # -- choosing ------------------------------------------------------------------------

    @classmethod
    def sniff(cls, source: PackageSource) -> bool:
        if source.is_directory:
            return (source.path / "bagit.txt").is_file()
        head = source.head(512)
        try:
            if head[:4] == b"PK\x03\x04":
                with SafeArchive.open(source.path, name=source.label) as archive:
                    names = set(archive.names())
                    return "bagit.txt" in names or any(
                        n.count("/") == 1 and n.endswith("/bagit.txt") for n in names)
            return _tar_has_bagit(source.path)
        except (DavpackError, OSError, tarfile.TarError, EOFError, ValueError):
            return False

    # -- ingest --------------------------------------------------------------------------

    def ingest(self, op: Operation, source: PackageSource,
               request: IngestRequest) -> IngestResult:
        label = source.label
        create_fields = request.params.get_bool("createMetadataFields", False)
        with op.context(write=False) as ctx:  # fail early, before extracting anything
            collection = itemkit.parent_collection(ctx, request, self.name)
            authz.authorize(ctx, collection, m.Action.ADD)
        with itemkit.scratch_dir(op.repo, "bagit-") as scratch:
            if source.is_directory:
                check_directory(source.path, label)
                root = source.path.resolve()
                extracted = False
            else:
                root = extract_bag(source.path, scratch / "bag", label)
                extracted = True
            bag = open_bag(root, label, extracted=extracted)
            inputs = metadata_inputs(bag)
            verify_files(inputs, label)  # before anything is read from them
            plan = plan_item(bag, title_fallback=_bag_title(source, root, scratch))
            kept = {id(f.payload) for f in plan.files}
            verify_files([p for p in bag.payload
                          if id(p) not in kept and p not in inputs], label)
            values = drop_install_fields(plan.values)
            with itemkit.StagedFiles(op.repo) as files:
                staged = []
                problems: list[Detail] = []
                for planned in plan.files:
                    payload = planned.payload
                    with open(payload.path, "rb") as raw:
                        reader = HashingReader(raw, payload.checksums, STORE_ALGORITHMS)
                        content = files.stage(cast(BinaryIO, reader), name=planned.name)
                    digests = content.digests
                    problems.extend(reader.mismatches(payload.manifest_path,
                                                      {"md5": digests.md5,
                                                       "sha256": digests.sha256}))
                    staged.append(content)
                    if extracted:
                        payload.path.unlink()  # its bytes are in staging now
                if problems:
                    raise refusal(label, "the payload does not match its manifests", problems)
                with op.context() as ctx:
                    collection = itemkit.parent_collection(ctx, request, self.name)
                    item = itemkit.new_item(ctx, collection)
                    if create_fields:
                        itemkit.add_metadata(ctx, item, values, create_prefixes=("",))
                    else:
                        itemkit.add_metadata(ctx, item, values,
                                             create_prefixes=(LOCAL_PREFIX,))
                    for planned, content in zip(plan.files, staged, strict=True):
                        stored = files.keep(ctx, content)
                        itemkit.add_file(ctx, item, planned.bundle, stored, name=planned.name,
                                         description=planned.description,
                                         source=planned.source, primary=planned.primary)
                    itemkit.add_license(ctx, item, files, request)
                    itemkit.finish_item(ctx, item, request)
                    record = itemkit.created(item, source, plan.warnings)
        op.report(record)
        return IngestResult(objects=[record], warnings=list(plan.warnings))

    # -- disseminate ---------------------------------------------------------------------

    def disseminate(self, op: Operation, target: uuid.UUID,
                    params: PackageParameters) -> Package:
        with op.context(write=False) as ctx:
            item = itemkit.load_item(ctx, target, self.name)
            snapshot = itemkit.snapshot_item(ctx, item)
            file_name = self.file_name(item, params)
        top = file_name.rsplit(".", 1)[0]
        layout = build_layout(op.repo.store, snapshot, top, snapshot.last_modified)
        return itemkit.ZipPackage(layout, file_name=file_name,
                                  last_modified=snapshot.last_modified)


def _tar_has_bagit(path: Path, max_members: int = 64) -> bool:
    """Look at the first members of a (compressed) tar for a root-level bagit.txt, reading
    headers in stream mode (nothing is extracted)."""
    with tarfile.open(path, mode="r|*") as archive:
        for index, member in enumerate(archive):
            name = re.sub(r"^(\./)+", "", member.name)
            if member.isfile() and (name == "bagit.txt" or (
                    name.count("/") == 1 and name.endswith("/bagit.txt"))):
                return True
            if index >= max_members:
                break
    return False


def _bag_title(source: PackageSource, root: Path, scratch: Path) -> str:
    """A title for bags that give none: the bag's directory name, else the package's."""
    if source.is_directory or root != scratch / "bag":
        return root.name
    name = source.label.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"(?i)\.(zip|tar|tgz|tar\.gz|tar\.bz2|tar\.xz)$", "", name) or name
