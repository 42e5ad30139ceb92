// Violins: per (group, gene) the density of the cells' non-zero values (exact histograms
// from POST /violin, shared bins per gene) mirrored around the row, a grey bar for the
// fraction of cells at zero, and over them the box of the precomputed quantiles (zeros
// included: 10th–90th whiskers, 25th–75th box, median line). One value axis per gene; every
// row says how many cells its group has, and its label stays in view as the plot scrolls.

import { el, extent, fmt, pct, svg, textWidth } from "./dom.js";
import { groupLabel, keepRowLabelsInView, rowLabels, valuesTable } from "./grid.js";

const ROW = 40;
const COLUMN = 200;
const ZERO = 34; // the zero-fraction strip left of each gene's axis
const ORDER = ["q10", "q25", "median", "q75", "q90"];

/** The violin outline of one histogram: bin centres, half-heights from `scale(density)`. */
function outline(edges, counts, nnz, x, yMid, half) {
  if (!edges || !nnz) return "";
  const top = [];
  const bottom = [];
  counts.forEach((c, k) => {
    const h = half(c / (nnz * (edges[k + 1] - edges[k])));
    const cx = x((edges[k] + edges[k + 1]) / 2);
    top.push(`${cx},${yMid - h}`);
    bottom.unshift(`${cx},${yMid + h}`);
  });
  const [x0, x1] = [x(edges[0]), x(edges[edges.length - 1])];
  return `M${x0},${yMid} L${top.join(" L")} L${x1},${yMid} L${bottom.join(" L")} Z`;
}

/**
 * Draw `data` ({groups, genes, sizes, values: {q10 … q90}}) with `violins` (the /violin answer,
 * or null: boxes only) into chart, legend and table.
 */
export function renderViolins({ chart, legend, table }, data, violins, { unit = null } = {}) {
  const { groups, genes, values, sizes } = data;
  const left = Math.ceil(Math.max(40, ...groups.map((g, i) => textWidth(groupLabel(g, sizes?.[i]))))) + 14;
  const top = 34;
  const width = left + genes.length * (ZERO + COLUMN + 20);
  const height = top + groups.length * ROW + 26;
  const y = (i) => top + i * ROW + ROW / 2;
  const byGroup = violins ? new Map(violins.groups.map((g, i) => [g, i])) : null;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Violins of ${genes.length} genes across ${groups.length} groups: density of the non-zero values, `
      + "fraction of zeros, and the quantiles of all cells" });
  genes.forEach((gene, j) => {
    const x0 = left + j * (ZERO + COLUMN + 20);
    const v = violins?.violins[j];
    const edgesMax = v?.edges ? v.edges[v.edges.length - 1] : 0;
    const largest = Math.max(edgesMax, extent(values.q90.map((r) => r[j]))[1]);
    const hi = largest > 0 ? largest : 1;
    const ax = x0 + ZERO;
    const x = (value) => ax + (COLUMN * Math.max(0, value)) / hi;
    let densest = 0;
    if (v?.edges) {
      for (const g of groups) {
        const gi = byGroup.get(g);
        v.counts[gi].forEach((c, k) => {
          if (v.nnz[gi]) densest = Math.max(densest, c / (v.nnz[gi] * (v.edges[k + 1] - v.edges[k])));
        });
      }
    }
    const half = (d) => (densest > 0 ? (ROW / 2 - 3) * (d / densest) : 0);
    root.append(svg("text", { x: ax + COLUMN / 2, y: top - 14, "text-anchor": "middle", class: "gene-label" }, gene),
      svg("text", { x: x0 + ZERO / 2, y: top - 2, "text-anchor": "middle", class: "tick" }, "zeros"),
      svg("line", { x1: ax, x2: ax + COLUMN, y1: height - 22, y2: height - 22, class: "axis" }),
      svg("text", { x: ax, y: height - 8, class: "tick" }, "0"),
      svg("text", { x: ax + COLUMN, y: height - 8, "text-anchor": "end", class: "tick" }, fmt(hi)),
      ...(unit ? [svg("text", { x: ax + COLUMN / 2, y: height - 8, "text-anchor": "middle", class: "tick unit" }, unit)] : []));
    groups.forEach((group, i) => {
      const yMid = y(i);
      if (v) {
        const gi = byGroup.get(group);
        const n = violins.n_cells[gi];
        const zero = n ? (n - v.nnz[gi]) / n : 0;
        root.append(svg("g", { class: "violin", "data-group": group, "data-gene": gene, "data-n": String(n),
          "data-nnz": String(v.nnz[gi]), "data-zero": String(zero), "data-counts": v.counts[gi].join(","),
          "data-edges": v.edges ? v.edges.join(",") : "" },
        svg("title", {}, `${group} · ${gene}: ${n.toLocaleString()} cells, ${pct(zero)} at zero; `
          + `violin: density of the ${v.nnz[gi].toLocaleString()} non-zero values`),
        svg("rect", { x: x0 + 2, y: yMid - 6, width: Math.max(0, (ZERO - 6) * zero), height: 12, class: "zero-bar" }),
        svg("path", { d: outline(v.edges, v.counts[gi], v.nnz[gi], x, yMid, half), class: "violin-body" })));
      }
      const q = Object.fromEntries(ORDER.map((s) => [s, values[s][i][j]]));
      root.append(svg("g", { class: violins ? "box thin" : "box", "data-group": group, "data-gene": gene,
        ...Object.fromEntries(ORDER.map((s) => [`data-${s}`, String(q[s])])) },
      svg("title", {}, `${group} · ${gene}: median ${fmt(q.median)}, 25–75% ${fmt(q.q25)}–${fmt(q.q75)}, `
        + `10–90% ${fmt(q.q10)}–${fmt(q.q90)} (all cells, zeros included)`),
      svg("line", { x1: x(q.q10), x2: x(q.q90), y1: yMid, y2: yMid, class: "whisker" }),
      svg("rect", { x: x(q.q25), y: yMid - 4, width: Math.max(1, x(q.q75) - x(q.q25)), height: 8, class: "iqr" }),
      svg("line", { x1: x(q.median), x2: x(q.median), y1: yMid - 5, y2: yMid + 5, class: "median" })));
    });
  });
  root.append(rowLabels({ groups, sizes, left, y, height }));
  chart.replaceChildren(root);
  keepRowLabelsInView(chart);
  const reading = violins
    ? "Violin: density of the group's non-zero values (exact histogram, bins shared per gene). Grey bar: fraction "
      + "of the group's cells at zero. Box: 25th–75th percentile of all its cells (zeros included), line: median, "
      + "whiskers: 10th–90th."
    : "Whiskers: 10th–90th percentile of the group's cells (zeros included). Box: 25th–75th. Line: median.";
  legend.replaceChildren(el("figure", { class: "legend" }, el("figcaption", {}, violins ? "Reading the violins" : "Reading the boxes"),
    el("p", { class: "note" }, `${reading} Each gene has its own axis${unit ? `, in ${unit}` : ""}; `
      + "the number after each group is its cells.")));
  table.replaceChildren(valuesTable({
    caption: "Median (25th–75th percentile) per group and gene", groups, genes,
    cell: (i, j) => el("td", { "data-group": groups[i], "data-gene": genes[j], "data-median": String(values.median[i][j]) },
      `${fmt(values.median[i][j])} (${fmt(values.q25[i][j])}–${fmt(values.q75[i][j])})`),
  }));
}
