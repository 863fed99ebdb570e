"""The PDF packager: a single PDF in, an item's PDF out."""

from packagers.pdf.packager import PDFPackager

__all__ = ["PDFPackager"]
