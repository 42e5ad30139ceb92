// Per-group values for the dot plot and the heatmap, with the obs filters applied.
//
// How a filter is answered depends on what the dataset offers:
//   * "groups": every filtered column is part of the grouping, so a filter only keeps some
//     groups (rows) of the precomputed summary. Exact, no re-aggregation needed.
//   * "combination": a filtered column is not part of the grouping, but a precomputed
//     combination grouping covers the grouping's columns and the filtered ones (e.g. group
//     by cell_type, filter on donor, with "cell_type,donor" ingested). Its raw moments (sum,
//     nnz, n_cells) add up exactly over the kept combinations, here in the browser.
//   * "aggregate": the server has the gene-major view and its /aggregate endpoint, which
//     re-aggregates over any filter exactly. Preferred whenever the dataset lists it.
//   * "unsupported": none of the above; the filter panel disables such columns.

import { api } from "./api.js";

const MAX_COMBINATIONS = 1_000_000;

let features = { aggregate: false, expression: false };

/** Record which optional routes the server has (GET /api/v1/features). */
export function setFeatures(found) {
  features = { ...features, ...found };
}

/** Whether the server can re-aggregate over arbitrary filters (its /aggregate route, and
 * the gene-major view in this dataset version). */
export const hasAggregate = (detail) => features.aggregate && Boolean(detail.views && detail.views.matrix);

const columnsOf = (key) => key.split(",");

/** Filters that restrict something: a kept list that is not every category of its column. */
export function activeFilters(detail, filters) {
  const active = {};
  for (const [column, kept] of Object.entries(filters)) {
    const all = detail.obs[column]?.categories;
    if (!all) continue;
    if (kept.length < all.length || !all.every((c) => kept.includes(c))) active[column] = kept;
  }
  return active;
}

/** How the filters will be answered: {mode, key} (see the header of this module). */
export function plan(detail, groupby, filters) {
  const active = activeFilters(detail, filters);
  const grouped = new Set(columnsOf(groupby));
  const others = Object.keys(active).filter((c) => !grouped.has(c));
  if (others.length === 0) return { mode: "groups", key: groupby, active };
  if (hasAggregate(detail)) return { mode: "aggregate", key: groupby, active };
  const need = new Set([...grouped, ...others]);
  const covering = detail.groupbys
    .filter((k) => [...need].every((c) => columnsOf(k).includes(c)))
    .sort((a, b) => columnsOf(a).length - columnsOf(b).length);
  if (covering.length && groupParts(detail, covering[0])) return { mode: "combination", key: covering[0], active };
  return { mode: "unsupported", key: groupby, active, columns: others };
}

/** Whether filtering on `column` can be answered for this grouping (for the filter panel). */
export function canFilter(detail, groupby, column) {
  const all = detail.obs[column].categories;
  return plan(detail, groupby, { [column]: all.slice(1) }).mode !== "unsupported";
}

/** Group name → {column: category} for a grouping, from the categories of its columns. */
export function groupParts(detail, key) {
  const columns = columnsOf(key);
  if (!columns.every((c) => detail.obs[c])) return null;
  let size = 1;
  for (const c of columns) size *= detail.obs[c].categories.length;
  if (size > MAX_COMBINATIONS) return null;
  let entries = [["", {}]];
  for (const [i, column] of columns.entries()) {
    const next = [];
    for (const [name, parts] of entries) {
      for (const cat of detail.obs[column].categories) {
        next.push([i === 0 ? cat : `${name}_${cat}`, { ...parts, [column]: cat }]);
      }
    }
    entries = next;
  }
  return new Map(entries);
}

const keeps = (active, parts) =>
  Object.entries(active).every(([column, kept]) => !(column in parts) || kept.includes(parts[column]));

/** {groups, genes, mean[g][j], frac[g][j], mode} for the state's genes, grouping and filters. */
export async function groupValues(detail, state) {
  const p = plan(detail, state.groupby, state.filters);
  const { dataset, version, genes, groupby, layer } = state;
  if (p.mode === "unsupported") {
    throw new Error(`filtering on ${p.columns.join(", ")} with this grouping needs the /aggregate `
      + "endpoint (gene-major view), which this dataset version does not have");
  }
  if (p.mode === "aggregate") {
    const r = await api.aggregate(dataset, version, { genes, groupby, layer, filter: p.active,
      stats: ["mean", "frac_expressing", "n_cells"] });
    return dropEmpty({ groups: r.groups, genes: r.genes, mean: r.values.mean,
      frac: r.values.frac_expressing, n: r.values.n_cells.map((row) => row[0]), mode: p.mode });
  }
  if (p.mode === "groups") {
    const r = await api.summary(dataset, version, genes, groupby, ["mean", "frac_expressing"], layer);
    const parts = groupParts(detail, groupby);
    const keep = r.groups.map((g) => !parts || !parts.get(g) || keeps(p.active, parts.get(g)));
    const pick = (rows) => rows.filter((_, i) => keep[i]);
    return { groups: pick(r.groups), genes: r.genes, mean: pick(r.values.mean),
      frac: pick(r.values.frac_expressing), mode: p.mode };
  }
  return combine(detail, state, p, await api.summary(dataset, version, genes, p.key, ["sum", "nnz", "n_cells"], layer));
}

/**
 * {groups, genes, values: {stat: [g][j]}} for statistics that do not add up over groups
 * (quantiles): answered by the summary with group filters, or by /aggregate; a filter that
 * would need re-aggregation from a combination grouping cannot be answered here.
 */
export async function groupStats(detail, state, stats) {
  const p = plan(detail, state.groupby, state.filters);
  const { dataset, version, genes, groupby, layer } = state;
  if (p.mode === "aggregate") {
    const r = await api.aggregate(dataset, version, { genes, groupby, layer, filter: p.active, stats: [...stats, "n_cells"] });
    const keep = r.values.n_cells.map((row) => row[0] > 0);
    const pick = (rows) => rows.filter((_, i) => keep[i]);
    return { groups: pick(r.groups), genes: r.genes, values: Object.fromEntries(stats.map((s) => [s, pick(r.values[s])])) };
  }
  if (p.mode !== "groups") {
    const columns = Object.keys(p.active).filter((c) => !groupby.split(",").includes(c));
    throw new Error(`distributions filtered on ${columns.join(", ")} need the server's /aggregate endpoint; `
      + "filter on the grouping's own column, or clear that filter");
  }
  const r = await api.summary(dataset, version, genes, groupby, stats, layer);
  const parts = groupParts(detail, groupby);
  const keep = r.groups.map((g) => !parts || !parts.get(g) || keeps(p.active, parts.get(g)));
  const pick = (rows) => rows.filter((_, i) => keep[i]);
  return { groups: pick(r.groups), genes: r.genes, values: Object.fromEntries(stats.map((s) => [s, pick(r.values[s])])) };
}

/** Add the raw moments of the kept combinations into the groups of the chosen grouping. */
function combine(detail, state, p, r) {
  const parts = groupParts(detail, p.key);
  const target = columnsOf(state.groupby);
  const order = new Map(); // group name → accumulator, in the grouping's category order
  const nGenes = r.genes.length;
  r.groups.forEach((name, i) => {
    const part = parts.get(name);
    if (!part || !keeps(p.active, part)) return;
    const group = target.map((c) => part[c]).join("_");
    if (!order.has(group)) order.set(group, { rank: target.map((c) => detail.obs[c].categories.indexOf(part[c])),
      sum: new Float64Array(nGenes), nnz: new Float64Array(nGenes), n: 0 });
    const acc = order.get(group);
    acc.n += r.values.n_cells[i][0];
    for (let j = 0; j < nGenes; j++) {
      acc.sum[j] += r.values.sum[i][j];
      acc.nnz[j] += r.values.nnz[i][j];
    }
  });
  const groups = [...order.keys()].sort((a, b) => compareRanks(order.get(a).rank, order.get(b).rank));
  return dropEmpty({
    groups, genes: r.genes, mode: p.mode,
    n: groups.map((g) => order.get(g).n),
    mean: groups.map((g) => Array.from(order.get(g).sum, (s) => s / order.get(g).n)),
    frac: groups.map((g) => Array.from(order.get(g).nnz, (z) => z / order.get(g).n)),
  });
}

function compareRanks(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

function dropEmpty(result) {
  const keep = result.n.map((n) => n > 0);
  const pick = (rows) => rows.filter((_, i) => keep[i]);
  return { ...result, groups: pick(result.groups), mean: pick(result.mean), frac: pick(result.frac), n: pick(result.n) };
}
