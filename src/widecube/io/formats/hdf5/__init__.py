"""HDF5 readers: h5ad (anndata), 10x Genomics ``.h5`` and Loom, each recognised by its layout."""
