// What a layer's numbers are, for every colour scale and axis: its name and its unit.
//
// The dataset detail (GET /datasets/{name}) lists the layers of its views but says neither
// which layer is the default nor what kind of input the version was built from, so both are
// inferred from what ingest does: a `normalized` layer exists only for count input (then
// `raw` is those counts), and it is log1p of counts per `target_sum` (the gene-major view
// records target_sum; 10,000 is ingest's default). A version with only `raw` is shown as
// "values as given", which is honest whatever the input was. The default layer is the last
// listed one (ingest's rule); answers of /summary and /markers name the layer they used.

/** The layers of a dataset version, in the order the views list them (whichever views the
 * version was built with). */
export function layersOf(detail) {
  const views = detail.views ?? {};
  return views.summary?.layers ?? views.markers?.layers ?? views.quantiles?.layers
    ?? Object.keys(views.genes?.layers ?? {});
}

/** The layer used when none is chosen (the last listed, as ingest records it). */
export function defaultLayer(detail) {
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
  const layers = layersOf(detail);
  if (name === "normalized") return `log1p ${perTarget(detail)}`;
  if (name === "raw") return layers.includes("normalized") ? "counts" : "values as given";
  return name ? `${name} layer` : "values as given";
}

/** "Mean expression (log1p CP10k)": a quantity and the unit of the layer it is read from. */
export function withUnit(quantity, detail, layer) {
  return `${quantity} (${layerUnit(detail, layer)})`;
}
