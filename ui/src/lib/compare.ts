// The comparison dashboard's logic: which quality metrics a report has, the costs a chart can
// put on its x axis, and the points of the quality-against-cost chart.
import type { CompareReport } from '../bindings/CompareReport';
import type { Metric } from '../bindings/Metric';
import type { MethodId } from '../bindings/MethodId';
import type { MethodResult } from '../bindings/MethodResult';
import type { MetricPoint } from '../bindings/MetricPoint';
import type { MetricScore } from '../bindings/MetricScore';
import { colors, toPoints, type LineSeries, type ScatterPoint } from './chart';

/** A cost the chart can put on its x axis. */
export interface CostAxis {
  id: 'prepare' | 'memory' | 'energy' | 'latency' | 'context';
  label: string;
  value: (result: MethodResult) => number | null;
}

const MIB = 1024 * 1024;

export const COST_AXES: readonly CostAxis[] = [
  { id: 'prepare', label: 'preparation time (s)', value: (r) => r.cost.prepare_s },
  {
    id: 'memory',
    label: 'peak memory (MiB)',
    value: (r) => {
      const peaks = [r.cost.prepare_peak_rss_bytes, r.cost.eval?.peak_rss_bytes].filter((b): b is number => b != null);
      return peaks.length > 0 ? Math.max(...peaks) / MIB : null;
    },
  },
  { id: 'energy', label: 'preparation energy (J)', value: (r) => r.cost.prepare_energy_j },
  { id: 'latency', label: 'seconds per question (p50)', value: (r) => r.cost.eval?.latency_p50_s ?? null },
  { id: 'context', label: 'extra prompt tokens per question', value: (r) => r.cost.eval?.extra_context_tokens_mean ?? null },
];

/** The metrics any method of the report was scored on, in the order the first scores list them. */
export function reportMetrics(report: CompareReport): Metric[] {
  const seen: Metric[] = [];
  for (const method of report.methods) {
    for (const score of method.scores) if (!seen.includes(score.metric)) seen.push(score.metric);
  }
  return seen;
}

export function scoreOf(result: MethodResult, metric: Metric): MetricScore | null {
  return result.scores.find((s) => s.metric === metric) ?? null;
}

const ORDER: readonly MethodId[] = ['prompt', 'rag', 'soft-prompt', 'lora', 'full', 'pretrain'];

/** One colour per method, the same in every chart. */
export function methodColor(method: MethodId): string {
  const palette = colors.palette;
  return palette[ORDER.indexOf(method) % palette.length];
}

/** Each method with a score on `metric` and a value on `axis`, as a labelled dot. */
export function qualityPoints(report: CompareReport, metric: Metric, axis: CostAxis): ScatterPoint[] {
  return report.methods.flatMap((result) => {
    const score = scoreOf(result, metric);
    const x = axis.value(result);
    if (score === null || x === null || !Number.isFinite(x)) return [];
    return [{ x, y: score.estimate.value, label: result.name, color: methodColor(result.method) }];
  });
}

/** How the learning curves' x axis counts: steps, or the share of each run's own steps (the
 *  methods' budgets differ, so their curves end at different steps). */
export type CurveAxis = 'step' | 'share';

/** Each trained method's training loss, one line per method in its colour, from the metrics of
 *  its run (`curves`, by run id). Methods without a run or without points are left out. */
export function learningCurves(
  report: CompareReport,
  curves: ReadonlyMap<string, readonly MetricPoint[]>,
  axis: CurveAxis,
): LineSeries[] {
  return report.methods.flatMap((result) => {
    const points = result.run ? curves.get(result.run) : undefined;
    if (!points) return [];
    const last = Math.max(0, ...points.map((p) => p.step));
    const x = (p: MetricPoint) => (axis === 'share' && last > 0 ? (100 * p.step) / last : p.step);
    const line = toPoints(points, x, (p) => p.loss);
    if (line.length === 0) return [];
    return [{ name: result.name, points: line, color: methodColor(result.method), className: `curve-${result.method}` }];
  });
}

/** Each trained method's quality on `metric` against the examples it trained on, one line per
 *  method with a dot on each share of its set (the thorough preset trains each one again on 10%
 *  and 30% of its examples). Methods with fewer than two scored points are left out. */
export function dataCurves(report: CompareReport, metric: Metric): LineSeries[] {
  return report.methods.flatMap((result) => {
    const points = toPoints(
      result.data_curve ?? [],
      (p) => p.rows,
      (p) => p.scores.find((s) => s.metric === metric)?.estimate.value ?? null,
    );
    if (points.length < 2) return [];
    return [{ name: result.name, points, color: methodColor(result.method), dots: true, className: `data-${result.method}` }];
  });
}

/** The metric the chart starts on: token F1 when scored, else the first one that rises with quality. */
export function defaultMetric(report: CompareReport): Metric | null {
  const metrics = reportMetrics(report);
  if (metrics.includes('token-f1')) return 'token-f1';
  for (const method of report.methods) {
    const better = method.scores.find((s) => s.higher_is_better);
    if (better) return better.metric;
  }
  return metrics[0] ?? null;
}

/** The metric a chart shows: the one the user chose while the report has it, else the default. */
export function shownMetric(report: CompareReport, chosen: Metric | null): Metric | null {
  return chosen !== null && reportMetrics(report).includes(chosen) ? chosen : defaultMetric(report);
}

/** A score with as many decimals as its size needs: 0.43, 14.2, 802. */
export function formatScore(value: number): string {
  const size = Math.abs(value);
  return value.toFixed(size >= 100 ? 0 : size >= 10 ? 1 : 2);
}

/** The best of `results` on `metric`, and the runner-up, by the metric's own direction. */
function ranked(results: readonly MethodResult[], metric: Metric): [MethodResult, MetricScore][] {
  return results
    .flatMap((r): [MethodResult, MetricScore][] => {
      const s = scoreOf(r, metric);
      return s ? [[r, s]] : [];
    })
    .sort(([, a], [, b]) => (a.higher_is_better ? b.estimate.value - a.estimate.value : a.estimate.value - b.estimate.value));
}

function bestOn(results: readonly MethodResult[], metric: Metric, what: string): string | null {
  const order = ranked(results, metric);
  if (order.length === 0) return null;
  const [[best, score], next] = [order[0], order[1]];
  const e = score.estimate;
  let text = `${best.name} did best on ${what} (${metric} ${formatScore(e.value)}, 95% interval ${formatScore(e.low)}–${formatScore(e.high)})`;
  if (next) {
    const n = next[1].estimate;
    const overlap = score.higher_is_better ? n.high >= e.low : n.low <= e.high;
    if (overlap) text += `, not clearly ahead of ${next[0].name} (${formatScore(n.value)})`;
  }
  return text;
}

/**
 * What a comparison measured, in sentences the method guide's advisor shows beside its general
 * advice: the best method on quality, on the format and on facts, and the one that forgot least.
 */
export function measuredFindings(report: CompareReport): string[] {
  const done = report.methods.filter((m) => m.status === 'completed');
  const findings: (string | null)[] = [];
  const main = defaultMetric(report);
  if (main) findings.push(bestOn(done, main, 'answer quality'));
  if (main !== 'regex') findings.push(bestOn(done, 'regex', 'the required format'));
  if (main !== 'contains-all') findings.push(bestOn(done, 'contains-all', 'the facts answers must contain'));
  const probed = done.filter((m) => m.probe_change !== null);
  if (probed.length > 0) {
    const least = probed.reduce((a, b) => ((b.probe_change ?? 0) > (a.probe_change ?? 0) ? b : a));
    const change = least.probe_change ?? 0;
    findings.push(`${least.name} kept the most general knowledge (forgetting probe ${change >= 0 ? '+' : ''}${change.toFixed(2)})`);
  }
  return findings.filter((f): f is string => f !== null);
}
