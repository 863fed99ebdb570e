"""The IMSCP packager: IMS Content Packages in and out."""

from packagers.imscp.packager import IMSCPPackager

__all__ = ["IMSCPPackager"]
