// Legends: a colour bar for continuous values, a size key for the dot plot, and a swatch
// list for categories. Each is a labelled figure, readable by screen readers, and keeps what
// it draws in `legendSpec` so that export.js can redraw it in a standalone SVG.

import { css, gradient } from "./colors.js";
import { el, fmt, svg } from "./dom.js";

/** A horizontal colour bar from `min` to `max` with its title (and unit) and three ticks. */
export function colorBar({ title, min, max, scale, labels = null, unit = null }) {
  const ticks = labels || [fmt(min), fmt((min + max) / 2), fmt(max)];
  const caption = unit ? `${title} (${unit})` : title;
  const node = el("figure", { class: "legend color-bar", role: "img", "data-unit": unit,
    "aria-label": `${title}: colour scale from ${ticks[0]} to ${ticks[ticks.length - 1]}${unit ? `, in ${unit}` : ""}` },
  el("figcaption", {}, caption),
  el("div", { class: "bar", style: `background: ${gradient(scale)}` }),
  el("div", { class: "ticks", "aria-hidden": "true" }, ...ticks.map((t) => el("span", {}, t))));
  node.legendSpec = { kind: "color", title: caption, ticks, scale };
  return node;
}

/** Dot sizes for fractions 20…100 %, drawn as the dot plot draws them. */
export function sizeKey({ title, radius }) {
  const steps = [0.2, 0.4, 0.6, 0.8, 1];
  const r = radius(1);
  const width = steps.length * (2 * r + 18);
  const drawing = svg("svg", { width, height: 2 * r + 20, "aria-hidden": "true" },
    ...steps.flatMap((f, i) => {
      const cx = r + 4 + i * (2 * r + 18);
      return [
        svg("circle", { cx, cy: r + 2, r: radius(f), class: "key-dot" }),
        svg("text", { x: cx, y: 2 * r + 16, "text-anchor": "middle" }, `${f * 100}%`),
      ];
    }));
  const node = el("figure", { class: "legend size-key", role: "img",
    "aria-label": `${title}: dot area grows with the fraction, 20% to 100%` },
  el("figcaption", {}, title), drawing);
  node.legendSpec = { kind: "size", title, steps, radius };
  return node;
}

/** One swatch per category, with its cell count when known; `actions(name, i)` adds controls
 * to each entry and `header` to the caption (the embedding's hide / isolate toggles). */
export function categoryKey({ title, categories, color, counts = null, actions = null, header = null }) {
  const node = el("figure", { class: "legend category-key" },
    el("figcaption", {}, title, header),
    el("ul", { "aria-label": title }, ...categories.map((name, i) => el("li", { "data-category": name },
      el("span", { class: "swatch", style: `background: ${css(color(i))}`, "aria-hidden": "true" }),
      el("span", { class: "name" }, name),
      counts ? el("span", { class: "count" }, counts[i].toLocaleString()) : null,
      ...(actions ? actions(name, i) : [])))));
  node.legendSpec = { kind: "category", title, categories, color };
  return node;
}
