"""The Python client: widecube's queries as pandas DataFrames and AnnData, from a server or
from a local store, with the same methods and the same answers.

>>> import widecube
>>> wc = widecube.Client("http://127.0.0.1:8000")         # a server (widecube serve)
>>> pb = wc.summary("pbmc", ["CD3E", "MS4A1"], "cell_type", stats=["mean", "var"])
>>> pb.to_df(layer="mean").round(2)
      CD3E  MS4A1
T     7.99   0.71
B     1.48   7.89
NK    1.34   0.34
Mono  3.14   1.27
solo  0.00   0.00
>>> pb.uns["layer"]          # log1p of counts per 10,000, the default for count data
'normalized'
>>> local = widecube.open("./widecube-data")               # the same store, no server
>>> local.summary("pbmc", ["CD3E", "MS4A1"], "cell_type", stats=["mean", "var"]).to_df("mean").equals(
...     pb.to_df("mean"))
True
>>> wc.close(); local.close()

Per-group answers are the pseudobulk AnnData of ``scanpy.get.aggregate`` (groups × genes,
one layer per statistic); per-cell and per-gene answers are DataFrames. See :class:`Reader`
for every method.
"""

from ._export import write as write_pseudobulk
from ._interface import DEFAULT_STATS, Reader
from ._local import Local, open
from ._remote import Client, RemoteError

__all__ = ["DEFAULT_STATS", "Client", "Local", "Reader", "RemoteError", "open", "write_pseudobulk"]
