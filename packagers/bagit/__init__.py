"""The BAGIT packager: BagIt bags in, BagIt 1.0 zips out."""

from packagers.bagit.packager import BagItPackager

__all__ = ["BagItPackager"]
