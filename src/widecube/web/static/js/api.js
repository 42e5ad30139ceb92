// The REST API as functions. Every call after the dataset is resolved pins its version, so
// responses are immutable and the browser's HTTP cache answers repeats (see the server's
// Cache-Control); a page opened with release=NAME adds it to every dataset request, and the
// server answers each dataset at the version that release names. Failures become ApiError
// carrying the server's `detail` message.
// Signed in, the browser sends the session cookie (HttpOnly: the page never sees it) and every
// request that is not a GET carries the session's CSRF secret, which the server demands.

const BASE = "api/v1";
const ARROW = "application/vnd.apache.arrow.stream";
const CSRF_HEADER = "X-CSRF-Token";

let csrf = null; // this UI session's CSRF secret (from the sign-in answer or GET /session)
let release = null; // the page's release=NAME: every dataset route is asked for that release's version

/** Pin every dataset request to release `name` (null: the live or chosen versions). */
export function setRelease(name) {
  release = name || null;
}

/** Remember the CSRF secret of a session answer ({csrf}); null when signed out. */
function remember(me) {
  csrf = me?.csrf ?? null;
  return me;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function fail(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.detail) detail = String(body.detail);
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, detail);
}

async function request(path, { params = {}, body = null, method = null, accept = "application/json" } = {}) {
  const query = new URLSearchParams();
  if (release !== null && path.startsWith("/datasets/")) query.append("release", release);
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, v);
  }
  const url = `${BASE}${path}${query.size ? `?${query}` : ""}`;
  const init = { method: method ?? (body === null ? "GET" : "POST"), headers: { Accept: accept }, credentials: "same-origin" };
  if (body !== null) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (init.method !== "GET" && csrf !== null) init.headers[CSRF_HEADER] = csrf;
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the server (${err.message})`);
  }
  if (!response.ok) throw await fail(response);
  if (response.status === 204) return null;
  return accept === ARROW ? response.arrayBuffer() : response.json();
}

const enc = encodeURIComponent;

export const api = {
  /** Who this page is: {auth, user, via, groups, scope, datasets, csrf} (user null: anonymous). */
  session: async () => remember(await request("/session")),
  /** Exchange an API token for the session cookie; the token is not kept. */
  signIn: async (token) => remember(await request("/session", { body: { token } })),
  signOut: async () => {
    await request("/session", { method: "DELETE" });
    remember(null);
  },
  datasets: () => request("/datasets"),
  /** Full-text search and facets over the datasets' metadata: {total, datasets, facets}. */
  search: (q, filters = {}) => request("/search", { params: { q: q || null, ...filters } }),
  /** The same genes across the datasets a filter selects, pooled too (POST /atlas/expression). */
  atlas: (body) => request("/atlas/expression", { body }),
  /** The releases this visitor may read, newest first: [{name, created, note, datasets: {name: version}}]. */
  releases: () => request("/releases"),
  dataset: (name, version) => request(`/datasets/${enc(name)}`, { params: { version } }),
  versions: (name) => request(`/datasets/${enc(name)}/versions`),
  genes: (name, version, prefix, limit = 12) =>
    request(`/datasets/${enc(name)}/genes`, { params: { prefix, limit, version } }),
  /** Typed or pasted names → {genes: canonical names, unknown: [{query, suggestions}]}. */
  resolveGenes: (name, version, query) =>
    request(`/datasets/${enc(name)}/genes/resolve`, { body: { query, version } }),
  markers: (name, version, groupby, group, limit, layer = null) =>
    request(`/datasets/${enc(name)}/markers`, { params: { groupby, group, limit, layer, version } }),
  features: () => request("/features"),
  summary: (name, version, genes, groupby, stats, layer = null) =>
    request(`/datasets/${enc(name)}/summary`, { params: { genes, groupby, stats, layer, version } }),
  /** Exact re-aggregation over any filter (needs the gene-major view on the server). */
  aggregate: (name, version, body) => request(`/datasets/${enc(name)}/aggregate`, { body: { ...body, version } }),
  /** Two cell sets compared gene by gene: {a, b, within, genes?, top, rank, layer}. */
  compare: (name, version, body) => request(`/datasets/${enc(name)}/compare`, { body: { ...body, version } }),
  /** Per-group histograms of the non-zero values: {genes, groupby, filter, lasso, bins, layer}. */
  violin: (name, version, body) => request(`/datasets/${enc(name)}/violin`, { body: { ...body, version } }),
  /** The groups in dendrogram order: {genes, groupby, filter, lasso, layer}. */
  dendrogram: (name, version, body) => request(`/datasets/${enc(name)}/dendrogram`, { body: { ...body, version } }),
  /** The obs positions a cell set keeps, as a Uint32Array (Arrow on the wire). */
  cells: async (name, version, select) => {
    const buffer = await request(`/datasets/${enc(name)}/cells`, { body: { ...select, version }, accept: ARROW });
    return window.Arrow.tableFromIPC(new Uint8Array(buffer)).getChild("index").toArray();
  },
  /** One cell's id and obs values (the embedding's hover). */
  cell: (name, version, index) => request(`/datasets/${enc(name)}/obs/${index}`, { params: { version } }),
  embeddings: (name, version) => request(`/datasets/${enc(name)}/embedding`, { params: { version } }),
  embedding: async (name, version, key, color) => {
    const buffer = await request(`/datasets/${enc(name)}/embedding/${enc(key)}`, {
      params: { color, version }, accept: ARROW,
    });
    return decodeEmbedding(buffer);
  },
};

/** An embedding's Arrow IPC stream as typed arrays: {n, x, y, color: {kind, …} | null}. */
export function decodeEmbedding(buffer) {
  const table = window.Arrow.tableFromIPC(new Uint8Array(buffer));
  const meta = table.schema.metadata;
  const column = (name) => table.getChild(name)?.toArray() ?? null;
  const out = { n: table.numRows, x: column("x"), y: column("y"), color: null };
  const colorColumn = table.getChild("color");
  if (colorColumn) {
    const kind = meta.get("color_kind");
    out.color = { name: meta.get("color"), kind };
    if (kind === "category") {
      const data = colorColumn.data[0];
      const codes = Int32Array.from(data.values);
      if (data.nullCount > 0) {
        for (let i = 0; i < codes.length; i++) if (!colorColumn.isValid(i)) codes[i] = -1;
      }
      out.color.codes = codes;
      out.color.categories = data.dictionary.toArray().map(String);
    } else {
      out.color.values = colorColumn.toArray();
    }
  }
  return out;
}
