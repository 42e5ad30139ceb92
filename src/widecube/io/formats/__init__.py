"""The readers, one folder per family of storage; each reader sits beside the code only it uses.

* ``hdf5/``: h5ad (anndata), 10x Genomics HDF5 and Loom, recognised by their structure; the
  10x reader's parallel gzip-chunk inflater (``_chunks``).
* ``columnar/``: wide Parquet (one column per gene).
* ``text/``: CSV/TSV and 10x MTX folders, each with its numba scanner and streamer, the one
  number parser they share (``_numbers``) and the binary CSR both spill to (``_csrspill``).

Helpers shared across families stay here: walking compressed CSR/CSC arrays in bounded slabs
(``_compressed``: h5ad, 10x h5, and the text spill) and dense slabs to CSR (``_dense``: Loom,
Parquet). A new reader is a module in its family's folder (a new family, a new folder) that
calls :func:`widecube.io.register_reader` at import; it is imported, in detection order, by
``widecube/io/__init__.py``.
"""
