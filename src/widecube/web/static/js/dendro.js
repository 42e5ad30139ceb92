// The dendrogram beside a dot plot or heatmap whose rows are in its leaf order: scipy's
// drawing coordinates (leaves at 5, 15, 25, …; heights from 0) mapped onto the rows.

import { svg } from "./dom.js";

const WIDTH = 70;

/**
 * Append the tree to `root` (an SVG whose rows are at y(i), i in leaf order), right of
 * `x0`, widening the SVG; `tree` is the API's {icoord, dcoord, ordered}.
 */
export function drawDendrogram(root, tree, { x0, y }) {
  const top = Math.max(1e-12, ...tree.dcoord.flat());
  const row = (c) => y(0) + ((c - 5) / 10) * (tree.ordered.length > 1 ? y(1) - y(0) : 0);
  const x = (d) => x0 + 8 + (WIDTH - 12) * (d / top);
  const links = tree.icoord.map((ic, k) => {
    const dc = tree.dcoord[k];
    const points = ic.map((c, i) => `${x(dc[i])},${row(c)}`).join(" ");
    return svg("polyline", { points, class: "dendro-link" });
  });
  root.append(svg("g", { class: "dendrogram", "data-order": tree.ordered.join("\u001f"), "aria-hidden": "true" }, ...links));
  const width = Number(root.getAttribute("width")) + WIDTH;
  const height = Number(root.getAttribute("height"));
  root.setAttribute("width", width);
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
}
