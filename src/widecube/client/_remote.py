"""The HTTP face: :class:`Client` asks a widecube server, with Arrow on the wire.

Data answers (``/datasets``, ``/genes``, ``/summary``, ``/aggregate``, ``/expression``) are
requested as Arrow IPC streams (``Accept: application/vnd.apache.arrow.stream``): columnar,
typed, no float parsing; ``/markers``, ``/compare`` and ``/violin`` answer JSON only. HTTP
errors become widecube's errors, with the server's ``detail`` as the message:
404 → :class:`~widecube.errors.NotFound`, 422 → :class:`~widecube.errors.InvalidQuery`,
409 → :class:`~widecube.errors.CatalogError`, 410 → :class:`~widecube.errors.VersionGone`,
401 → :class:`~widecube.errors.AuthenticationFailed`, 403 →
:class:`~widecube.errors.PermissionDenied`; anything else (and a server that cannot be
reached) → :class:`RemoteError`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pyarrow as pa

from .._version import __version__
from ..errors import (
    AuthenticationFailed,
    CatalogError,
    InvalidQuery,
    NotFound,
    PermissionDenied,
    VersionGone,
    WidecubeError,
)
from . import _convert
from ._interface import Reader

__all__ = ["Client", "RemoteError"]

API = "/api/v1"


class RemoteError(WidecubeError):
    """The server answered an error widecube has no class for (5xx, 400, 401, 406…), or
    could not be reached. ``status`` is the HTTP status (None when nothing answered)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


_ERRORS: dict[int, type[WidecubeError]] = {
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    422: InvalidQuery,
    409: CatalogError,
    410: VersionGone,
}


class Client(Reader):
    """A widecube server's queries, answered as pandas DataFrames and AnnData.

    ``url`` is the server's root (``http://host:8000``); ``token``, if given, is sent as
    ``Authorization: Bearer <token>``; ``timeout`` is in seconds. Use it as a context manager,
    or call :meth:`close`, to release its connections. Every method is documented on
    :class:`~widecube.client.Reader`; :func:`widecube.open` has the same ones, without a server.

        >>> with widecube.Client("http://127.0.0.1:8000", token="sent, not yet checked") as wc:
        ...     wc.genes("pbmc", "ms")
        ['MS4A1']
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"widecube-client/{__version__}"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + API, headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, *, arrow: bool, **kw: Any) -> httpx.Response:
        headers = {"Accept": _convert.ARROW if arrow else "application/json"}
        try:
            response = self._http.request(method, path, headers=headers, **kw)
        except httpx.TransportError as exc:
            raise RemoteError(f"cannot reach the widecube server at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _table(self, method: str, path: str, **kw: Any) -> pa.Table:
        return _convert.read_ipc(self._request(method, path, arrow=True, **kw).content)

    def _fetch_datasets(self) -> list[dict[str, Any]]:
        return _convert.records(self._table("GET", "/datasets"))

    def _fetch_releases(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._request("GET", "/releases", arrow=False).json()
        return found

    def _fetch_genes(
        self, dataset: str, prefix: str, limit: int, version: str | None, release: str | None
    ) -> list[str]:
        params = _params({"prefix": prefix, "limit": limit, "version": version, "release": release})
        return _convert.genes_list(self._table("GET", f"{_path(dataset)}/genes", params=params))

    def _post(self, dataset: str, route: str, query: dict[str, Any]) -> pa.Table:
        """A POST query: ``release`` in the query string (as every route takes it), the rest
        as the JSON body."""
        body = {k: v for k, v in query.items() if k != "release"}
        params = _params({"release": query.get("release")})
        return self._table("POST", f"{_path(dataset)}/{route}", json=body, params=params)

    def _fetch_summary(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        return _convert.summary_result(self._post(dataset, "summary", query))

    def _fetch_aggregate(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        return _convert.summary_result(self._post(dataset, "aggregate", query))

    def _fetch_markers(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        return self._json("GET", f"{_path(dataset)}/markers", params=_params(query))

    def _fetch_expression(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        table = self._post(dataset, "expression", query)
        return _convert.expression_result(table, query["genes"])

    def _fetch_compare(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"{_path(dataset)}/compare", json=_params(query))

    def _fetch_violin(self, dataset: str, query: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"{_path(dataset)}/violin", json=_params(query))

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        found: dict[str, Any] = self._request(method, path, arrow=False, **kw).json()
        return found


def _path(dataset: str) -> str:
    return f"/datasets/{quote(dataset, safe='')}"


def _params(query: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in query.items() if v is not None}


def _error(response: httpx.Response) -> WidecubeError:
    """The widecube error for an HTTP error answer, with the server's ``detail``."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip() or response.reason_phrase
    status = response.status_code
    kind = _ERRORS.get(status)
    if kind is not None:
        return kind(str(detail))
    request = response.request
    return RemoteError(f"HTTP {status} from {request.method} {request.url}: {detail}", status)
