// Box plots from the precomputed quantiles: per (group, gene) the whiskers span the 10th to
// the 90th percentile of the group's cells (zeros included), the box the 25th to the 75th,
// and a line marks the median. One column per gene, each on its own value axis.

import { el, extent, fmt, svg, textWidth } from "./dom.js";
import { valuesTable } from "./grid.js";

const ROW = 22;
const COLUMN = 170;
const ORDER = ["q10", "q25", "median", "q75", "q90"];

/** Draw {groups, genes, values: {q10, q25, median, q75, q90}} into chart, legend and table. */
export function renderBoxplot({ chart, legend, table }, data, { unit = null } = {}) {
  const { groups, genes, values } = data;
  const left = Math.ceil(Math.max(40, ...groups.map((g) => textWidth(g)))) + 14;
  const top = 34;
  const width = left + genes.length * (COLUMN + 16);
  const height = top + groups.length * ROW + 26;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Box plots of ${genes.length} genes across ${groups.length} groups, from per-group quantiles` });
  groups.forEach((g, i) => root.append(svg("text", { x: left - 8, y: top + i * ROW + ROW / 2, "text-anchor": "end",
    "dominant-baseline": "middle", class: "group-label", "aria-hidden": "true" }, g)));
  genes.forEach((gene, j) => {
    const x0 = left + j * (COLUMN + 16);
    const largest = extent(values.q90.map((r) => r[j]))[1];
    const hi = largest > 0 ? largest : 1; // a gene at 0 everywhere still gets an axis
    const x = (v) => x0 + (COLUMN * v) / hi;
    root.append(svg("text", { x: x0 + COLUMN / 2, y: top - 14, "text-anchor": "middle", class: "gene-label" }, gene),
      svg("line", { x1: x0, x2: x0 + COLUMN, y1: height - 22, y2: height - 22, class: "axis" }),
      svg("text", { x: x0, y: height - 8, class: "tick" }, "0"),
      svg("text", { x: x0 + COLUMN, y: height - 8, "text-anchor": "end", class: "tick" }, fmt(hi)),
      ...(unit ? [svg("text", { x: x0 + COLUMN / 2, y: height - 8, "text-anchor": "middle", class: "tick unit" }, unit)] : []));
    groups.forEach((group, i) => {
      const q = Object.fromEntries(ORDER.map((s) => [s, values[s][i][j]]));
      const y = top + i * ROW + ROW / 2;
      root.append(svg("g", { class: "box", "data-group": group, "data-gene": gene,
        ...Object.fromEntries(ORDER.map((s) => [`data-${s}`, String(q[s])])) },
      svg("title", {}, `${group} · ${gene}: median ${fmt(q.median)}, 25–75% ${fmt(q.q25)}–${fmt(q.q75)}, `
        + `10–90% ${fmt(q.q10)}–${fmt(q.q90)}`),
      svg("line", { x1: x(q.q10), x2: x(q.q90), y1: y, y2: y, class: "whisker" }),
      svg("rect", { x: x(q.q25), y: y - 6, width: Math.max(1, x(q.q75) - x(q.q25)), height: 12, class: "iqr" }),
      svg("line", { x1: x(q.median), x2: x(q.median), y1: y - 7, y2: y + 7, class: "median" })));
    });
  });
  chart.replaceChildren(root);
  legend.replaceChildren(el("figure", { class: "legend" }, el("figcaption", {}, "Reading the boxes"),
    el("p", { class: "note" }, "Whiskers: 10th–90th percentile of the group's cells (zeros included). "
      + "Box: 25th–75th. Line: median. Each gene has its own axis, from 0 to its largest 90th percentile"
      + (unit ? `, in ${unit}.` : "."))));
  table.replaceChildren(valuesTable({
    caption: "Median (25th–75th percentile) per group and gene", groups, genes,
    cell: (i, j) => el("td", { "data-group": groups[i], "data-gene": genes[j], "data-median": String(values.median[i][j]) },
      `${fmt(values.median[i][j])} (${fmt(values.q25[i][j])}–${fmt(values.q75[i][j])})`),
  }));
}
