// Colour scales: a perceptual sequential map (viridis), a diverging map for z-scores,
// and a categorical palette. Each returns [r, g, b] in 0..255 so the same function feeds
// SVG fills and the scatter's colour bytes.

const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];
const DIVERGING = [
  [33, 102, 172], [103, 169, 207], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [239, 138, 98], [178, 24, 43],
];
// Tableau-20-like palette: distinct hues first, then their lighter partners.
const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
  "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
];
export const MISSING_RGB = [200, 200, 200];

function ramp(stops, t) {
  if (!Number.isFinite(t)) return MISSING_RGB;
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  return stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
}

/** Sequential colour of t in [0, 1]. */
export const sequential = (t) => ramp(VIRIDIS, t);
/** Diverging colour of t in [0, 1] (0.5 is neutral). */
export const diverging = (t) => ramp(DIVERGING, t);

/** Colour of category `i` (cycles, with darker shades after the palette runs out). */
export function category(i) {
  const hex = PALETTE[i % PALETTE.length];
  const shade = [1, 0.75, 0.55][Math.floor(i / PALETTE.length) % 3];
  return [1, 3, 5].map((k) => Math.round(parseInt(hex.slice(k, k + 2), 16) * shade));
}

/** CSS `rgb()` of an [r, g, b] triple. */
export const css = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

/** A CSS linear-gradient of a scale, for colour-bar legends. */
export function gradient(scale, steps = 10) {
  const parts = [];
  for (let i = 0; i <= steps; i++) parts.push(`${css(scale(i / steps))} ${(100 * i) / steps}%`);
  return `linear-gradient(to right, ${parts.join(", ")})`;
}
