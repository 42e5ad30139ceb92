// Small DOM helpers shared by every module: element builders and number formatting.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with attributes (`class`, `data-*`, `aria-*`, …) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** An SVG element with attributes and children. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "style") { // through the CSSOM: the CSP refuses style="…" attributes
      node.style.cssText = String(value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** Remove every child of `node`, then append `children`. */
export function replace(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
}

/** A number for people: 3 significant digits, "–" when undefined. */
export function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e4 || abs < 1e-3) return value.toExponential(2);
  return value.toPrecision(3).replace(/\.?0+$/, "");
}

/** A fraction as a percentage for people. */
export function pct(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${(100 * value).toFixed(1)}%`;
}

/** Width in pixels of `text` in the page's label font (for chart margins). */
export function textWidth(text, font = "12px system-ui, sans-serif") {
  const ctx = (textWidth.canvas ||= document.createElement("canvas")).getContext("2d");
  ctx.font = font;
  return ctx.measureText(text).width;
}

/** [min, max] of the finite numbers in `values` ([Infinity, -Infinity] if none). */
export function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}
