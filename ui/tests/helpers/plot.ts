// Reading Observable Plot output in jsdom: tick labels, line vertices, and pointer positions.
import type { PlotElement } from '../../src/lib/chart';

/** The tick labels of one axis, as drawn. */
export function tickLabels(root: Element, axis: 'x' | 'y'): string[] {
  return [...root.querySelectorAll(`g[aria-label="${axis}-axis tick label"] text`)].map((t) => t.textContent ?? '');
}

/** How many points the line of a series (by its class) passes through; 0 when it is not drawn. */
export function linePoints(root: Element, className: string): number {
  const d = root.querySelector(`g.${className}.line path`)?.getAttribute('d') ?? '';
  return d.match(/[ML]/g)?.length ?? 0;
}

/** The plot drawn inside a component. */
export function plotIn(root: Element, label: string): PlotElement {
  const plot = root.querySelector(`svg[aria-label^="${label}"]`);
  if (!plot) throw new Error(`no plot labelled ${label}`);
  return plot as PlotElement;
}

/**
 * Client coordinates of a data point. jsdom lays nothing out, so d3's pointer reads them as
 * coordinates inside the plot.
 */
export function pointAt(plot: PlotElement, x: number, y: number): [number, number] {
  return [plot.scale('x')!.apply(x), plot.scale('y')!.apply(y)];
}
