"""DSpace's Simple Archive Format (SAF): batch import and export of items.

``SAFPackager`` is the plugin (registered as ``SAF``); :mod:`packagers.saf.reader` reads
batches, :mod:`packagers.saf.importer` imports them item by item (mapfile, resume,
validation), :mod:`packagers.saf.writer` writes SAF zips.  The ``davpack import`` and
``davpack export`` commands are in :mod:`server.cli.saf`.
"""

from packagers.saf.packager import SAFPackager

__all__ = ["SAFPackager"]
