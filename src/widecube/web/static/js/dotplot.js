// The dot plot, as on CELLxGENE: a dot per (group, gene); its area is the fraction of the
// group's cells expressing the gene, its colour the mean expression (optionally scaled to
// 0..1 per gene). Every dot carries its exact values in data-* attributes.

import { css, sequential } from "./colors.js";
import { el, extent, fmt, pct, svg } from "./dom.js";
import { attachTooltip, CELL, frame, keepRowLabelsInView, valuesTable } from "./grid.js";
import { colorBar, sizeKey } from "./legend.js";

const MAX_R = CELL / 2 - 1.5;
/** Dot radius for a fraction: area proportional to the fraction. */
export const radius = (frac) => (frac > 0 ? Math.max(1, MAX_R * Math.sqrt(frac)) : 0);

/** Colour position (0..1) of every mean: global 0..max, or min..max per gene when scaled. */
export function colorPositions(mean, scaled) {
  const nGenes = mean.length ? mean[0].length : 0;
  const genes = [...Array(nGenes).keys()];
  const top = Math.max(0, extent(mean.flat())[1]);
  const bounds = genes.map((j) => (scaled ? extent(mean.map((r) => r[j])) : [0, top]));
  const at = mean.map((row) => row.map((v, j) => {
    if (v === null || Number.isNaN(v)) return NaN;
    const [lo, hi] = bounds[j];
    return hi > lo ? (v - lo) / (hi - lo) : 0;
  }));
  return { at, max: top };
}

/**
 * Draw `data` ({groups, genes, mean, frac, notes}) into the chart, legend and table holders.
 * When the server withholds the fraction expressing (`notes.frac_expressing`: scaled values,
 * where zero is not "not expressed"), every dot is full size and the legend says why.
 */
export function renderDotplot({ chart, legend, table }, data, { scaled, unit = null }) {
  const { groups, genes, mean, sizes } = data;
  const withheld = data.notes?.frac_expressing ?? null;
  const frac = withheld ? data.frac.map((row) => row.map(() => null)) : data.frac;
  const { root, x, y } = frame({ groups, genes, sizes,
    label: `Dot plot of ${genes.length} genes across ${groups.length} groups: dot size is the fraction `
      + "of cells expressing, colour the mean expression" });
  const colors = colorPositions(mean, scaled);
  const dots = svg("g", { class: "dots" });
  groups.forEach((group, i) => genes.forEach((gene, j) => {
    const f = withheld ? 1 : frac[i][j] ?? 0;
    dots.append(svg("circle", {
      cx: x(j), cy: y(i), r: radius(f), fill: css(sequential(colors.at[i][j])), class: "dot",
      "data-group": group, "data-gene": gene, "data-mean": String(mean[i][j]), "data-frac": String(frac[i][j]),
    }, svg("title", {}, `${group} · ${gene}: mean ${fmt(mean[i][j])}, ${pct(f)} expressing`)));
  }));
  root.append(dots);
  attachTooltip(root, (d) => `${d.group} · ${d.gene}\nmean ${fmt(Number(d.mean))}\n${pct(Number(d.frac))} of cells expressing`);
  chart.replaceChildren(root);
  keepRowLabelsInView(chart);
  legend.replaceChildren(
    scaled
      ? colorBar({ title: "Mean expression, scaled per gene", min: 0, max: 1, scale: sequential,
        labels: ["gene min", "", "gene max"], unit })
      : colorBar({ title: "Mean expression", min: 0, max: colors.max, scale: sequential, unit }),
    withheld
      ? el("p", { class: "note withheld", "data-stat": "frac_expressing" },
        `Fraction of cells expressing is not shown (every dot is full size): ${withheld}.`)
      : sizeKey({ title: "Fraction of cells expressing", radius }),
  );
  table.replaceChildren(valuesTable({
    caption: `Mean expression${unit ? ` in ${unit}` : ""} (fraction of cells expressing) per group and gene`,
    groups, genes,
    cell: (i, j) => el("td", { "data-group": groups[i], "data-gene": genes[j], "data-mean": String(mean[i][j]),
      "data-frac": String(frac[i][j]) }, `${fmt(mean[i][j])} (${pct(frac[i][j])})`),
  }));
}
