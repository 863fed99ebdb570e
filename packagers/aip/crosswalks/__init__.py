"""The metadata crosswalks of the AIP packager: one module per METS section type.

``dim`` (DIM and AIP-TECHMD), ``mods`` (MODS from Dublin Core and back), ``premis``
(bitstream fixity), ``rights`` (METSRights: resource policies), ``roles`` (DSPACE-ROLES:
groups and people) and ``extension`` (davpack's DAVPACK-OBJECT and DAVPACK-RELATIONSHIPS
sections).  Each builds lxml elements for the writer and reads them back from a parsed
manifest; none touches the database.
"""
