// Scales a run's loss curves into an SVG box: one polyline per series, sharing both axes.

export interface CurvePoint {
  step: number;
  value: number;
}

export interface ScaledCurves {
  /** `points` attribute of each series' polyline, in the order given. */
  polylines: string[];
  /** The same points as [x, y] pairs, for markers. */
  coordinates: [number, number][][];
  minStep: number;
  maxStep: number;
  minValue: number;
  maxValue: number;
}

/** Maps series of (step, value) into a width x height box with `pad` pixels of margin. */
export function scaleCurves(series: CurvePoint[][], width: number, height: number, pad = 8): ScaledCurves {
  const all = series.flat().filter((p) => Number.isFinite(p.value));
  if (all.length === 0) {
    return {
      polylines: series.map(() => ''),
      coordinates: series.map(() => []),
      minStep: 0,
      maxStep: 0,
      minValue: 0,
      maxValue: 0,
    };
  }
  const minStep = Math.min(...all.map((p) => p.step));
  const maxStep = Math.max(...all.map((p) => p.step));
  const minValue = Math.min(...all.map((p) => p.value));
  const maxValue = Math.max(...all.map((p) => p.value));
  const spanStep = maxStep - minStep || 1;
  const spanValue = maxValue - minValue || 1;
  const x = (step: number) => pad + ((step - minStep) / spanStep) * (width - 2 * pad);
  const y = (value: number) => height - pad - ((value - minValue) / spanValue) * (height - 2 * pad);
  const coordinates = series.map((points) =>
    points.filter((p) => Number.isFinite(p.value)).map((p): [number, number] => [x(p.step), y(p.value)]),
  );
  const polylines = coordinates.map((points) =>
    points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' '),
  );
  return { polylines, coordinates, minStep, maxStep, minValue, maxValue };
}
