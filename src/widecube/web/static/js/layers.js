// What a layer's numbers are, for every colour scale and axis: its name and its unit.
//
// The dataset detail (GET /datasets/{name}) names the kind of input (`input_kind`: counts,
// log1p, scaled), the default layer and every layer with its unit (`layers: [{name, kind,
// unit}]`); answers of /summary, /aggregate and /markers name their layer and unit too, and
// say in `notes` which statistics the layer's kind withholds. A server without these fields
// (older) is read as before: a `normalized` layer exists only for count input, the default
// layer is the last listed one.

/** The layers of a dataset version, in the order the server lists them. */
export function layersOf(detail) {
  if (Array.isArray(detail.layers) && detail.layers.length) return detail.layers.map((l) => l.name);
  const views = detail.views ?? {};
  return views.summary?.layers ?? views.markers?.layers ?? views.quantiles?.layers
    ?? Object.keys(views.genes?.layers ?? {});
}

/** The layer used when none is chosen. */
export function defaultLayer(detail) {
  if (detail.default_layer) return detail.default_layer;
  const layers = layersOf(detail);
  return layers.length ? layers[layers.length - 1] : null;
}

function perTarget(detail) {
  const target = Number(detail.views?.matrix?.target_sum ?? 1e4);
  return target === 1e4 ? "CP10k" : target === 1e6 ? "CPM" : `counts per ${target.toLocaleString()}`;
}

/** The unit of `layer` (null: the default layer) in `detail`'s version, for people. */
export function layerUnit(detail, layer) {
  const name = layer || defaultLayer(detail);
  const listed = (detail.layers ?? []).find((l) => l.name === name);
  if (listed) return listed.unit;
  const layers = layersOf(detail);
  if (name === "normalized") return `log1p ${perTarget(detail)}`;
  if (name === "raw" || name === "input") return layers.includes("normalized") ? "counts" : "values as given";
  return name ? `${name} layer` : "values as given";
}

/** "Mean expression (log1p CP10k)": a quantity and the unit of the layer it is read from. */
export function withUnit(quantity, detail, layer) {
  return `${quantity} (${layerUnit(detail, layer)})`;
}
