// Charts drawn with Observable Plot: run curves (loss, learning rate) and scatter plots of runs.
// Colours are the theme's CSS variables, so a chart follows light and dark without redrawing;
// long series are decimated to a few points per pixel column before Plot sees them.
import * as Plot from '@observablehq/plot';
import type { MetricPoint } from '../bindings/MetricPoint';

/** One point of a series; for run curves x is the step. */
export interface ChartPoint {
  x: number;
  y: number;
}

/** A named series, drawn as a line, dots, or both. */
export interface LineSeries {
  name: string;
  points: ChartPoint[];
  /** Any CSS colour; a `var(--token)` follows the theme. */
  color: string;
  dashed?: boolean;
  /** Draw the line (default true). */
  line?: boolean;
  /** A dot on every point, for sparse series such as validations. */
  dots?: boolean;
  /** Class of the series' marks (`<class> line`, `<class> dots`), for styling and tests. */
  className?: string;
}

export type ScaleType = 'linear' | 'log';

export interface ChartOptions {
  width: number;
  height: number;
  xLabel: string;
  yLabel: string;
  xType?: ScaleType;
  yType?: ScaleType;
  xFormat?: (value: number) => string;
  yFormat?: (value: number) => string;
  /** Whole-number x (steps): no ticks between integers. */
  integerX?: boolean;
  /** Accessible name of the drawing. */
  ariaLabel?: string;
}

/** The point under the pointer, for a readout. */
export interface FocusedPoint {
  series: string;
  x: number;
  y: number;
  color: string;
}

export type PlotElement = ReturnType<typeof Plot.plot>;

/** Theme tokens for series; the dashboard picks method colours from `palette` in order. */
export const colors = {
  primary: 'var(--accent)',
  secondary: 'var(--warning)',
  muted: 'var(--text-muted)',
  // Six, one per method; the last is a teal that reads on both themes.
  palette: ['var(--accent)', 'var(--warning)', 'var(--success)', 'var(--danger)', 'var(--text-muted)', '#0e9aa7'],
};

// Text and background from the theme (Plot's defaults assume a white page); --plot-background
// is what Plot's own tips would fill with.
const THEME_STYLE =
  'color: var(--text-muted); --plot-background: var(--surface); background: transparent; ' +
  'font-family: var(--font-sans); font-size: var(--text-xs); overflow: visible;';

/** The width used until the container reports one (and always in jsdom). */
export const FALLBACK_WIDTH = 560;

/** Records with a nullable value as chart points, skipping the nulls. */
export function toPoints<T>(
  records: readonly T[],
  x: (record: T) => number,
  y: (record: T) => number | null,
): ChartPoint[] {
  const points: ChartPoint[] = [];
  for (const record of records) {
    const value = y(record);
    if (value !== null) points.push({ x: x(record), y: value });
  }
  return points;
}

/**
 * Reduces a series to at most four points per column (first, lowest, highest, last, in x order),
 * `columns` spanning the x range, so a long run keeps its shape and its spikes. Points that are
 * not finite are dropped; points out of x order are sorted; a series already small enough is
 * returned as it is.
 */
export function decimate<P extends ChartPoint>(points: readonly P[], columns: number): P[] {
  const finite: P[] = [];
  let ordered = true;
  for (const point of points) {
    if (!Number.isFinite(point.x) || !Number.isFinite(point.y)) continue;
    if (finite.length > 0 && point.x < finite[finite.length - 1].x) ordered = false;
    finite.push(point);
  }
  if (!ordered) finite.sort((a, b) => a.x - b.x);
  const buckets = Math.max(1, Math.floor(columns));
  if (finite.length <= 4 * buckets) return finite;

  const x0 = finite[0].x;
  const span = finite[finite.length - 1].x - x0;
  const bucketOf = (x: number) => (span === 0 ? 0 : Math.min(buckets - 1, Math.floor(((x - x0) / span) * buckets)));
  const kept: P[] = [];
  let first = 0;
  while (first < finite.length) {
    const bucket = bucketOf(finite[first].x);
    let last = first;
    let low = first;
    let high = first;
    while (last + 1 < finite.length && bucketOf(finite[last + 1].x) === bucket) {
      last += 1;
      if (finite[last].y < finite[low].y) low = last;
      if (finite[last].y > finite[high].y) high = last;
    }
    let previous = -1;
    for (const index of [first, Math.min(low, high), Math.max(low, high), last]) {
      if (index > previous) kept.push(finite[index]);
      previous = Math.max(previous, index);
    }
    first = last + 1;
  }
  return kept;
}

/** Compact exponent notation for tick labels: 0.0002 → 2e-4, 0.00025 → 2.5e-4. */
export function formatExponent(value: number): string {
  if (value === 0) return '0';
  if (!Number.isFinite(value)) return String(value);
  // Three significant digits hide float noise such as 3.0000000000000003e-4.
  return Number(value.toPrecision(3)).toExponential().replace('e+', 'e');
}

function extentX(series: { points: ChartPoint[] }[]): [number, number] | null {
  let low = Infinity;
  let high = -Infinity;
  for (const { points } of series) {
    for (const { x } of points) {
      if (x < low) low = x;
      if (x > high) high = x;
    }
  }
  return low <= high ? [low, high] : null;
}

function axes(options: ChartOptions, xTicks?: number): Plot.Markish[] {
  return [
    Plot.gridY({ stroke: 'var(--border)', strokeOpacity: 1 }),
    // On a log axis d3 thins the labels of a format it is given; '~g' writes 0.1 rather than 100m.
    Plot.axisX({
      label: options.xLabel,
      labelArrow: 'none',
      tickFormat: options.xFormat ?? (options.xType === 'log' ? '~g' : undefined),
      ticks: xTicks,
    }),
    Plot.axisY({
      // Room for labels such as 2.5e-4 at the theme's font size.
      marginLeft: 52,
      label: options.yLabel,
      labelArrow: 'none',
      tickFormat: options.yFormat ?? (options.yType === 'log' ? '~g' : undefined),
    }),
  ];
}

/**
 * Line chart of named series on shared axes. Hovering focuses the nearest point (mostly by x):
 * a rule and a dot mark it, and the plot's `value` (see `showChart`) is that FocusedPoint.
 */
export function lineChart(series: LineSeries[], options: ChartOptions): PlotElement {
  const { width, height, yType = 'linear' } = options;
  const drawn = series.map((s) => ({
    ...s,
    points: decimate(yType === 'log' ? s.points.filter((p) => p.y > 0) : s.points, width),
  }));
  const focusable: FocusedPoint[] = drawn.flatMap((s) =>
    s.points.map((p) => ({ series: s.name, x: p.x, y: p.y, color: s.color })),
  );

  // d3 picks a tick step of at least 1 when it is asked for no more ticks than the span.
  const extent = options.integerX ? extentX(drawn) : null;
  const xTicks = extent ? Math.max(1, Math.min(Math.round(width / 80), extent[1] - extent[0])) : undefined;

  const marks: Plot.Markish[] = axes(options, xTicks);
  for (const s of drawn) {
    const className = s.className ?? 'series';
    if (s.line !== false) {
      marks.push(
        Plot.line(s.points, {
          x: 'x',
          y: 'y',
          stroke: s.color,
          strokeWidth: 2,
          strokeDasharray: s.dashed ? '5 4' : undefined,
          className: `${className} line`,
        }),
      );
    }
    if (s.dots) {
      marks.push(Plot.dot(s.points, { x: 'x', y: 'y', fill: s.color, r: 3.5, className: `${className} dots` }));
    }
  }
  marks.push(
    Plot.ruleX(focusable, Plot.pointerX({ x: 'x', py: 'y', stroke: 'var(--text-faint)', maxRadius: Infinity })),
    Plot.dot(
      focusable,
      Plot.pointerX({
        x: 'x',
        y: 'y',
        r: 4.5,
        fill: 'color',
        stroke: 'var(--surface)',
        strokeWidth: 1.5,
        maxRadius: Infinity,
      }),
    ),
  );

  return Plot.plot({
    width,
    height,
    className: 'tunelab-chart',
    style: THEME_STYLE,
    ariaLabel: options.ariaLabel,
    x: { type: options.xType ?? 'linear' },
    y: { type: yType },
    marks,
  });
}

/** One run in a scatter plot: quality against a cost such as time or memory. */
export interface ScatterPoint extends ChartPoint {
  label: string;
  color?: string;
}

/**
 * Scatter plot with a labelled dot per point, e.g. validation loss against wall time for each
 * method; hovering focuses the nearest dot like `lineChart` (the series is the label).
 */
export function scatterChart(points: ScatterPoint[], options: ChartOptions): PlotElement {
  const fits = (value: number, type?: ScaleType) => Number.isFinite(value) && (type !== 'log' || value > 0);
  const focusable: FocusedPoint[] = points
    .filter((p) => fits(p.x, options.xType) && fits(p.y, options.yType))
    .map((p) => ({ series: p.label, x: p.x, y: p.y, color: p.color ?? colors.primary }));
  const xs = focusable.map((p) => p.x);
  const middle = (Math.min(...xs) + Math.max(...xs)) / 2;
  const rightHalf = (x: number) => xs.length > 1 && x > middle;
  return Plot.plot({
    width: options.width,
    height: options.height,
    className: 'tunelab-chart',
    style: THEME_STYLE,
    ariaLabel: options.ariaLabel,
    inset: 12,
    x: { type: options.xType ?? 'linear' },
    y: { type: options.yType ?? 'linear' },
    marks: [
      ...axes(options),
      Plot.dot(focusable, { x: 'x', y: 'y', fill: 'color', r: 5, className: 'points' }),
      // Labels lean away from the nearer edge, so that none is cut off at the right.
      Plot.text(focusable.filter((p) => !rightHalf(p.x)), { x: 'x', y: 'y', text: 'series', dy: -10, fill: 'var(--text)', textAnchor: 'start' }),
      Plot.text(focusable.filter((p) => rightHalf(p.x)), { x: 'x', y: 'y', text: 'series', dy: -10, fill: 'var(--text)', textAnchor: 'end' }),
      Plot.dot(focusable, Plot.pointer({ x: 'x', y: 'y', r: 7, stroke: 'var(--text)', fill: 'none' })),
    ],
  });
}

// The last pointer position over each host, replayed into a redrawn plot so that a live chart
// keeps its readout while the pointer rests on it.
const lastPointer = new WeakMap<Element, { clientX: number; clientY: number }>();

/**
 * Shows `plot` in `host` in place of what was there, and reports the focused point (or null) to
 * `onFocus` now and whenever it changes. Returns the listeners' cleanup.
 */
export function showChart(
  host: HTMLElement,
  plot: PlotElement,
  onFocus: (point: FocusedPoint | null) => void,
): () => void {
  const report = () => onFocus((plot.value as FocusedPoint | null | undefined) ?? null);
  const track = (event: Event) => {
    const { clientX, clientY } = event as MouseEvent;
    lastPointer.set(host, { clientX, clientY });
  };
  const forget = () => lastPointer.delete(host);
  plot.addEventListener('input', report);
  plot.addEventListener('pointermove', track);
  plot.addEventListener('pointerleave', forget);
  host.replaceChildren(plot);
  const last = lastPointer.get(host);
  // Plot only reads the position (and pointerType/buttons), which a MouseEvent carries too.
  if (last) plot.dispatchEvent(new MouseEvent('pointermove', last));
  report();
  return () => {
    plot.removeEventListener('input', report);
    plot.removeEventListener('pointermove', track);
    plot.removeEventListener('pointerleave', forget);
  };
}

/** Calls `onWidth` with the element's width now and as it changes; returns the cleanup. */
export function observeWidth(element: HTMLElement, onWidth: (width: number) => void): () => void {
  // jsdom lays nothing out (width 0) and has no ResizeObserver: the caller's fallback stays.
  if (element.clientWidth > 0) onWidth(element.clientWidth);
  if (typeof ResizeObserver === 'undefined') return () => {};
  const observer = new ResizeObserver(([entry]) => {
    const width = Math.floor(entry.contentRect.width);
    if (width > 0) onWidth(width);
  });
  observer.observe(element);
  return () => observer.disconnect();
}

/** A run's training loss as a line and its validation losses (few, often one at the end) as a
 *  dashed line with a dot on each. */
export function lossSeries(points: readonly MetricPoint[]): LineSeries[] {
  return [
    { name: 'training', points: toPoints(points, (p) => p.step, (p) => p.loss), color: colors.primary, className: 'train' },
    {
      name: 'validation',
      points: toPoints(points, (p) => p.step, (p) => p.val_loss),
      color: colors.secondary,
      dashed: true,
      dots: true,
      className: 'validation',
    },
  ];
}
