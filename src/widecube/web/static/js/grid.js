// The groups × genes frame shared by the dot plot and the heatmap: labelled axes, a cell
// per (group, gene), a hover tooltip, and an accessible table of the same values.

import { el, svg, textWidth } from "./dom.js";

export const CELL = 24;

/** A group's row label: its name and, when known, its number of cells. */
export const groupLabel = (group, n) => (n === undefined || n === null ? group : `${group} (${n.toLocaleString()})`);

/**
 * Row labels on a white band, in their own group, so that `keepRowLabelsInView` can hold
 * them at the left edge while a wide plot scrolls sideways.
 */
export function rowLabels({ groups, sizes, left, y, height }) {
  return svg("g", { class: "row-labels", "aria-hidden": "true" },
    svg("rect", { x: 0, y: 0, width: left - 2, height, class: "row-band" }),
    ...groups.map((g, i) => svg("text", { x: left - 8, y: y(i), "text-anchor": "end", "dominant-baseline": "middle",
      class: "group-label", "data-group": g, "data-n": sizes ? String(sizes[i]) : null }, groupLabel(g, sizes?.[i]))));
}

/** Hold every `g.row-labels` of `chart`'s SVG at the visible left edge as it scrolls. */
export function keepRowLabelsInView(chart) {
  const place = () => {
    for (const g of chart.querySelectorAll("g.row-labels")) g.setAttribute("transform", `translate(${chart.scrollLeft} 0)`);
  };
  for (const g of chart.querySelectorAll("g.row-labels")) g.parentNode.append(g); // drawn above the marks
  if (!chart.dataset.sticky) {
    chart.dataset.sticky = "1";
    chart.addEventListener("scroll", place, { passive: true });
  }
  place();
}

/** An SVG with group labels (and sizes) down the left and gene labels (slanted) along the top. */
export function frame({ groups, genes, label, sizes = null }) {
  const left = Math.ceil(Math.max(40, ...groups.map((g, i) => textWidth(groupLabel(g, sizes?.[i]))))) + 14;
  const slant = Math.ceil(Math.max(30, ...genes.map((g) => textWidth(g))) * 0.72); // labels at 45°
  const top = slant + 16;
  const width = left + genes.length * CELL + Math.max(16, slant - CELL / 2);
  const height = top + groups.length * CELL + 8;
  const x = (j) => left + j * CELL + CELL / 2;
  const y = (i) => top + i * CELL + CELL / 2;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  const axes = svg("g", { class: "axes", "aria-hidden": "true" },
    ...genes.map((g, j) => svg("text", { x: x(j) - 4, y: top - 8, transform: `rotate(-45 ${x(j) - 4} ${top - 8})`,
      class: "gene-label" }, g)),
    ...groups.map((_, i) => svg("line", { x1: left, x2: left + genes.length * CELL, y1: y(i), y2: y(i), class: "grid-line" })),
    ...genes.map((_, j) => svg("line", { x1: x(j), x2: x(j), y1: top, y2: height - 8, class: "grid-line" })));
  root.append(axes, rowLabels({ groups, sizes, left, y, height }));
  return { root, x, y, left, top, width, height };
}

/** Show `describe(target)` in the shared tooltip while the pointer is over a value mark. */
export function attachTooltip(root, describe) {
  const tip = document.getElementById("tooltip");
  root.addEventListener("pointermove", (event) => {
    const mark = event.target.closest("[data-gene]");
    if (!mark) return (tip.hidden = true);
    tip.textContent = describe(mark.dataset);
    tip.hidden = false;
    tip.style.left = `${event.clientX + 14}px`;
    tip.style.top = `${event.clientY + 14}px`;
  });
  root.addEventListener("pointerleave", () => (tip.hidden = true));
}

/** The values as a table (groups × genes), for screen readers and for copying numbers. */
export function valuesTable({ caption, groups, genes, cell }) {
  return el("table", { class: "values" },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "group"),
      ...genes.map((g) => el("th", { scope: "col" }, g)))),
    el("tbody", {}, ...groups.map((group, i) => el("tr", {}, el("th", { scope: "row" }, group),
      ...genes.map((gene, j) => cell(i, j))))));
}
