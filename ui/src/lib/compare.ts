// The comparison dashboard's logic: which quality metrics a report has, the costs a chart can
// put on its x axis, and the points of the quality-against-cost chart.
import type { CompareReport } from '../bindings/CompareReport';
import type { Metric } from '../bindings/Metric';
import type { MethodId } from '../bindings/MethodId';
import type { MethodResult } from '../bindings/MethodResult';
import type { MetricScore } from '../bindings/MetricScore';
import { colors, type ScatterPoint } from './chart';

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

/** A score with as many decimals as its size needs: 0.43, 14.2, 802. */
export function formatScore(value: number): string {
  const size = Math.abs(value);
  return value.toFixed(size >= 100 ? 0 : size >= 10 ? 1 : 2);
}
