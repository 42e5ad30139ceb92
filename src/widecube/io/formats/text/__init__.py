"""Text readers: CSV/TSV (``delimited``) and 10x MTX folders (``mtx``), parsed once at open.

Each is scanned by a numba kernel on two cores (``_csvscan`` through ``_widetext``;
``_mtxscan`` through ``_mtxstream``) that share one number parser (``_numbers``), and
spilled to a binary CSR in the work folder (``_csrspill``) that the blocks are read back from.
"""
