// The heatmap: a cell per (group, gene) coloured by the mean expression, or by its z-score
// across the shown groups (per gene), on a diverging scale centred on 0.

import { css, diverging, sequential } from "./colors.js";
import { el, extent, fmt, svg } from "./dom.js";
import { attachTooltip, CELL, frame, keepRowLabelsInView, valuesTable } from "./grid.js";
import { colorBar } from "./legend.js";

const Z_LIMIT = 3;

/** Per-gene z-scores across groups (population sd; 0 where a gene is constant). */
export function zscores(mean) {
  const nGenes = mean.length ? mean[0].length : 0;
  const out = mean.map((row) => row.slice());
  for (let j = 0; j < nGenes; j++) {
    const col = mean.map((r) => r[j]).filter((v) => v !== null && !Number.isNaN(v));
    const mu = col.reduce((a, b) => a + b, 0) / (col.length || 1);
    const sd = Math.sqrt(col.reduce((a, b) => a + (b - mu) ** 2, 0) / (col.length || 1));
    for (const row of out) row[j] = row[j] === null ? null : sd > 0 ? (row[j] - mu) / sd : 0;
  }
  return out;
}

/** Draw `data` ({groups, genes, mean}) as a heatmap; `zscore` colours z-scores per gene. */
export function renderHeatmap({ chart, legend, table }, data, { zscore, unit = null }) {
  const { groups, genes, mean, sizes } = data;
  const values = zscore ? zscores(mean) : mean;
  const max = Math.max(0, extent(mean.flat())[1]);
  const color = zscore
    ? (v) => diverging((Math.max(-Z_LIMIT, Math.min(Z_LIMIT, v)) + Z_LIMIT) / (2 * Z_LIMIT))
    : (v) => sequential(max > 0 ? v / max : 0);
  const what = zscore ? "z-score of the mean per gene" : "mean expression";
  const { root, x, y } = frame({ groups, genes, sizes,
    label: `Heatmap of the ${what} of ${genes.length} genes across ${groups.length} groups` });
  const cells = svg("g", { class: "cells" });
  groups.forEach((group, i) => genes.forEach((gene, j) => {
    const v = values[i][j];
    cells.append(svg("rect", {
      x: x(j) - CELL / 2, y: y(i) - CELL / 2, width: CELL - 1, height: CELL - 1, class: "cell",
      fill: v === null ? "#ddd" : css(color(v)),
      "data-group": group, "data-gene": gene, "data-value": String(v), "data-mean": String(mean[i][j]),
    }, svg("title", {}, `${group} · ${gene}: ${what} ${fmt(v)}`)));
  }));
  root.append(cells);
  attachTooltip(root, (d) => `${d.group} · ${d.gene}\n${what} ${fmt(Number(d.value))}`);
  chart.replaceChildren(root);
  keepRowLabelsInView(chart);
  legend.replaceChildren(zscore
    ? colorBar({ title: "z-score of the mean, per gene", min: -Z_LIMIT, max: Z_LIMIT, scale: diverging,
      labels: [`≤ −${Z_LIMIT}`, "0", `≥ ${Z_LIMIT}`], unit: unit && `means in ${unit}` })
    : colorBar({ title: "Mean expression", min: 0, max, scale: sequential, unit }));
  table.replaceChildren(valuesTable({
    caption: `${what[0].toUpperCase()}${what.slice(1)} per group and gene`, groups, genes,
    cell: (i, j) => el("td", { "data-group": groups[i], "data-gene": genes[j], "data-value": String(values[i][j]) },
      fmt(values[i][j])),
  }));
}
