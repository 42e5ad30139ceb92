// Export of what a tab shows: the figure (plot and its legends, units included) as SVG or
// PNG, and its numbers as CSV. The dot plot, heatmap and box plots are SVG already: the
// export clones them, inlines the stylesheet rules they need and redraws the HTML legends in
// SVG (from each legend's `legendSpec`). The embedding is a canvas: its points go into the SVG
// as one raster image (millions of circles would make an unusable file), with vector
// legends. PNG is the same SVG rendered onto a canvas at twice the size.

import { css } from "./colors.js";
import { textWidth } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const STYLE = `
text { font: ${FONT}; fill: #1d2330; }
.grid-line { stroke: #eef0f4; }
.dot { stroke: rgba(0, 0, 0, .25); stroke-width: .5; }
.key-dot { fill: #7f8aa0; }
.box .whisker, .axis { stroke: #5b6475; stroke-width: 1; }
.box .iqr { fill: #9db8e6; stroke: #2f5fb3; }
.box .median { stroke: #1d2330; stroke-width: 2; }
.tick { font-size: 11px; fill: #5b6475; }
.legend-title { font-weight: 600; }`;
const LEGEND_WIDTH = 230;
const MAX_CATEGORIES = 40;

const node = (tag, attrs = {}, text = null) => {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== null) n.textContent = text;
  return n;
};

/** One legend (its `legendSpec`) drawn in SVG at (x, y); returns [group, height]. */
function legendSvg(spec, x, y, id) {
  const g = node("g", { transform: `translate(${x} ${y})` });
  g.append(node("text", { x: 0, y: 12, class: "legend-title" }, spec.title));
  if (spec.kind === "color") {
    const grad = node("linearGradient", { id, x1: 0, x2: 1, y1: 0, y2: 0 });
    for (let i = 0; i <= 10; i++) grad.append(node("stop", { offset: i / 10, "stop-color": css(spec.scale(i / 10)) }));
    const defs = node("defs");
    defs.append(grad);
    g.append(defs, node("rect", { x: 0, y: 20, width: 180, height: 12, fill: `url(#${id})`, stroke: "#d9dee7" }));
    spec.ticks.forEach((t, i) => g.append(node("text", { x: (180 * i) / (spec.ticks.length - 1), y: 46, class: "tick",
      "text-anchor": i === 0 ? "start" : i === spec.ticks.length - 1 ? "end" : "middle" }, t)));
    return [g, 56];
  }
  if (spec.kind === "size") {
    const r = spec.radius(1);
    spec.steps.forEach((f, i) => {
      const cx = r + 4 + i * (2 * r + 18);
      g.append(node("circle", { cx, cy: 22 + r, r: spec.radius(f), class: "key-dot" }),
        node("text", { x: cx, y: 2 * r + 36, "text-anchor": "middle", class: "tick" }, `${f * 100}%`));
    });
    return [g, 2 * r + 44];
  }
  const shown = spec.categories.slice(0, MAX_CATEGORIES);
  shown.forEach((name, i) => g.append(node("circle", { cx: 6, cy: 24 + i * 16, r: 5, fill: css(spec.color(i)) }),
    node("text", { x: 16, y: 28 + i * 16 }, name)));
  const more = spec.categories.length - shown.length;
  if (more > 0) g.append(node("text", { x: 16, y: 28 + shown.length * 16, class: "tick" }, `… and ${more} more`));
  return [g, 28 + (shown.length + (more > 0)) * 16];
}

/** A standalone SVG: `plot` (an <svg>) with the legends found under `legendHolder` on its right. */
export function figureSvg(plot, legendHolder, title) {
  const chart = plot.cloneNode(true);
  const w = Number(chart.getAttribute("width"));
  const h = Number(chart.getAttribute("height"));
  const specs = [...legendHolder.querySelectorAll(".legend")].map((l) => l.legendSpec).filter(Boolean);
  const legends = [];
  let y = 24;
  specs.forEach((spec, i) => {
    const [g, height] = legendSvg(spec, w + 16, y, `export-gradient-${i}`);
    legends.push(g);
    y += height + 16;
  });
  const bold = `600 ${FONT}`;
  const titles = specs.map((spec) => Math.max(textWidth(spec.title, bold),
    ...(spec.kind === "category" ? spec.categories.slice(0, MAX_CATEGORIES).map((c) => 16 + textWidth(c, FONT)) : [])));
  const legendWidth = specs.length ? Math.max(LEGEND_WIDTH, ...titles.map((t) => Math.ceil(t) + 32)) : 0;
  const width = Math.max(w + legendWidth, Math.ceil(textWidth(title, bold)) + 16);
  const height = Math.max(h + 24, y);
  const root = node("svg", { xmlns: SVG_NS, width, height, viewBox: `0 0 ${width} ${height}` });
  root.append(node("style", {}, STYLE), node("rect", { width, height, fill: "#fff" }),
    node("text", { x: 4, y: 14, class: "legend-title" }, title));
  chart.setAttribute("x", 0);
  chart.setAttribute("y", 24);
  root.append(chart, ...legends);
  return root;
}

/** An <svg> holding a canvas's pixels as one image (the embedding's points). */
export function rasterSvg(canvas, width, height) {
  const root = node("svg", { xmlns: SVG_NS, width, height, viewBox: `0 0 ${width} ${height}` });
  root.append(node("image", { href: canvas.toDataURL("image/png"), x: 0, y: 0, width, height }));
  return root;
}

const serialize = (svgRoot) => new XMLSerializer().serializeToString(svgRoot);

/** The SVG file of a figure. */
export function svgBlob(svgRoot) {
  return new Blob([`<?xml version="1.0" encoding="UTF-8"?>\n${serialize(svgRoot)}`], { type: "image/svg+xml" });
}

/** The figure rendered to PNG at `scale` × its size. */
export async function pngBlob(svgRoot, scale = 2) {
  const url = URL.createObjectURL(svgBlob(svgRoot));
  try {
    const img = new Image();
    img.src = url;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = Math.ceil(Number(svgRoot.getAttribute("width")) * scale);
    canvas.height = Math.ceil(Number(svgRoot.getAttribute("height")) * scale);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    return await new Promise((resolve, reject) =>
      canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the browser could not encode the PNG"))), "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

const quote = (v) => {
  const s = v === null || v === undefined || (typeof v === "number" && Number.isNaN(v)) ? "" : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** A CSV file (RFC 4180; numbers at full precision, missing values empty). */
export function csvBlob(header, rows) {
  const lines = [header, ...rows].map((r) => r.map(quote).join(","));
  return new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" });
}

/** Long-format rows (group, gene, stat…) of a groups × genes answer. */
export function groupRows(data, stats) {
  const rows = [];
  data.groups.forEach((group, i) => data.genes.forEach((gene, j) => {
    rows.push([group, gene, ...stats.map((s) => data.values[s][i][j])]);
  }));
  return rows;
}

/** Hand `blob` to the browser as a download named `filename`. */
export function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
