"""The METS packager: DSpace METS SIP profile packages (SWORD ``METSDSpaceSIP``) in, METS
DIPs out."""

from packagers.mets.packager import SWORD_LEGACY_URI, SWORD_URI, METSPackager

__all__ = ["SWORD_LEGACY_URI", "SWORD_URI", "METSPackager"]
