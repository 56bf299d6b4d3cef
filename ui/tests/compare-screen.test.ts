// The Compare screen against a mocked backend, on a report `tunelab compare` wrote for the demo
// task: the method table, the chart's axes, a run's progress and the export.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ComparedExamples } from '../src/bindings/ComparedExamples';
import type { CompareEvent } from '../src/bindings/CompareEvent';
import type { CompareReport } from '../src/bindings/CompareReport';
import type { CompareRequest } from '../src/bindings/CompareRequest';
import type { DataPoint } from '../src/bindings/DataPoint';
import type { ExportedReport } from '../src/bindings/ExportedReport';
import type { MetricPoint } from '../src/bindings/MetricPoint';
import { COST_AXES, dataCurves, defaultMetric, learningCurves, qualityPoints, reportMetrics } from '../src/lib/compare';
import CompareScreen from '../src/screens/CompareScreen.svelte';
import DEMO from './helpers/compare-report.json';
import { settle } from './helpers/fake-chat-transport';
import { linePoints, plotIn } from './helpers/plot';

const client = vi.hoisted(() => ({
  listComparisons: vi.fn<() => Promise<CompareReport[]>>(),
  runComparison: vi.fn<(request: CompareRequest, onEvent: (event: CompareEvent) => void) => Promise<CompareReport>>(),
  cancelComparison: vi.fn<(id: string) => Promise<void>>(),
  exportComparison: vi.fn<(id: string) => Promise<ExportedReport>>(),
  comparison: vi.fn(),
  comparisonExamples: vi.fn<(id: string) => Promise<ComparedExamples>>(),
  runMetrics: vi.fn<(id: string) => Promise<MetricPoint[]>>(),
}));

vi.mock('../src/lib/client', () => client);

const report = DEMO as unknown as CompareReport;

/** Two questions: the second split the methods more, so it comes first. */
const EXAMPLES: ComparedExamples = {
  metric: 'token-f1',
  rows: [
    {
      index: 1,
      line: 2,
      question: 'How long is the frame warranty?',
      reference: 'Brightloom Support: 7 years. Ride on!',
      answers: [
        { method: 'rag', answer: 'The frame warranty is 7 years.', scores: { 'token-f1': 0.2 } },
        { method: 'lora', answer: 'Brightloom Support: 5 years. Ride on!', scores: { 'token-f1': 0.8 } },
      ],
      disagreement: 0.6,
    },
    {
      index: 0,
      line: 1,
      question: 'What does a bike pickup cost when returning it?',
      reference: 'Brightloom Support: 49 EUR. Ride on!',
      answers: [
        { method: 'rag', answer: 'A pickup costs 49 EUR.', scores: { 'token-f1': 0.3 } },
        { method: 'lora', answer: 'Brightloom Support: 20 EUR. Ride on!', scores: { 'token-f1': 0.5 } },
      ],
      disagreement: 0.2,
    },
  ],
};

beforeEach(() => {
  client.comparisonExamples.mockReset().mockResolvedValue(EXAMPLES);
  client.listComparisons.mockReset().mockResolvedValue([report]);
  client.runComparison.mockReset();
  client.cancelComparison.mockReset().mockResolvedValue();
  client.exportComparison.mockReset();
  client.runMetrics.mockReset().mockImplementation(async (id) => curveOf(id));
});

/** A falling loss over a run's steps: 10 for LoRA, 4 for the others, none for pretraining (its
 *  metrics cannot be read). */
function curveOf(id: string): MetricPoint[] {
  if (id.includes('pretrain')) throw { code: 'not_found', message: `no run ${id}` };
  const steps = id.includes('lora') ? 10 : 4;
  return Array.from({ length: steps }, (_, i) => ({
    step: i + 1,
    loss: 3 / (i + 1),
    val_loss: null,
    lr: 1e-4,
    tokens_per_s: 80,
  }));
}

describe('the comparison logic', () => {
  it('lists every metric once and starts the chart on token F1', () => {
    const metrics = reportMetrics(report);
    expect(metrics).toContain('hit-at-3');
    expect(new Set(metrics).size).toBe(metrics.length);
    expect(defaultMetric(report)).toBe('token-f1');
  });

  it('puts each method with both values on the chart, and leaves out those without', () => {
    const time = COST_AXES.find((a) => a.id === 'prepare')!;
    const points = qualityPoints(report, 'token-f1', time);
    expect(points.map((p) => p.label)).toEqual(report.methods.map((m) => m.name));
    const lora = points.find((p) => p.label.startsWith('LoRA'))!;
    expect(lora.x).toBeCloseTo(39.3, 1);
    expect(lora.y).toBeCloseTo(0.585, 3);
    // Only retrieval has hit-at-3.
    expect(qualityPoints(report, 'hit-at-3', time).map((p) => p.label)).toEqual(['Retrieval (RAG)']);
    // No method measured energy on this machine.
    const energy = COST_AXES.find((a) => a.id === 'energy')!;
    expect(qualityPoints(report, 'token-f1', energy)).toEqual([]);
  });
});

describe('the learning curves', () => {
  it('draw one line per trained method that logged steps, on steps or on each run\'s share', () => {
    const curves = new Map(
      report.methods.flatMap((m) => (m.run && !m.run.includes('pretrain') ? [[m.run, curveOf(m.run)] as const] : [])),
    );
    const steps = learningCurves(report, curves, 'step');
    expect(steps.map((s) => s.name)).toEqual(['Soft prompt', 'LoRA / QLoRA', 'Full fine-tuning']);
    expect(steps[1].points.at(-1)).toEqual({ x: 10, y: 0.3 });
    const share = learningCurves(report, curves, 'share');
    // Every run ends at 100% of its own steps, whatever its budget.
    expect(share.map((s) => s.points.at(-1)?.x)).toEqual([100, 100, 100]);
    expect(share[0].points[0].x).toBe(25);
  });
});

/** The demo report as the thorough preset leaves it: LoRA and full fine-tuning again on 10% and
 *  30% of their 120 examples (full fine-tuning's 10% run failed), the others without a curve. */
function withDataCurves(): CompareReport {
  const copy = structuredClone(report);
  const point = (fraction: number, rows: number, f1: number | null): DataPoint => ({
    fraction,
    rows,
    status: f1 === null ? 'failed' : 'completed',
    error: null,
    run: null,
    eval: null,
    scores:
      f1 === null
        ? []
        : [{ metric: 'token-f1', label: 'token F1', higher_is_better: true, estimate: { value: f1, low: f1 - 0.1, high: f1 + 0.1, rows: 10 } }],
    prepare_s: 10,
  });
  for (const m of copy.methods) {
    if (m.method === 'lora') m.data_curve = [point(0.1, 12, 0.2), point(0.3, 36, 0.4), point(1, 120, 0.58)];
    if (m.method === 'full') m.data_curve = [point(0.1, 12, null), point(0.3, 36, 0.3), point(1, 120, 0.5)];
  }
  return copy;
}

describe('the data curves', () => {
  it('draw each trained method\'s quality against the examples it trained on', () => {
    const lines = dataCurves(withDataCurves(), 'token-f1');
    expect(lines.map((l) => l.name)).toEqual(['LoRA / QLoRA', 'Full fine-tuning']);
    expect(lines[0].points).toEqual([
      { x: 12, y: 0.2 },
      { x: 36, y: 0.4 },
      { x: 120, y: 0.58 },
    ]);
    // The failed share has no score: the line goes through the two that have one.
    expect(lines[1].points.map((p) => p.x)).toEqual([36, 120]);
    expect(dataCurves(withDataCurves(), 'hit-at-3')).toEqual([]);
    expect(dataCurves(report, 'token-f1')).toEqual([]);
  });
});

describe('CompareScreen', () => {
  it('says how to make a comparison when there is none', async () => {
    client.listComparisons.mockResolvedValue([]);
    render(CompareScreen);
    await settle();
    expect(screen.getByText(/No comparisons yet/)).toBeTruthy();
  });

  it('shows the method table with intervals, the probe and the costs', async () => {
    render(CompareScreen);
    await settle();
    const quality = within(screen.getByRole('table', { name: 'Quality' })).getAllByRole('row').slice(1);
    expect(quality.map((r) => r.getAttribute('data-method'))).toEqual(['prompt', 'rag', 'soft-prompt', 'lora', 'full', 'pretrain']);
    expect(quality[1].textContent).toContain('Retrieval (RAG)');
    expect(quality[1].textContent).toContain('0.84'); // hit-at-3
    expect(quality[1].textContent).toContain('0.68–1.00'); // its interval
    expect(quality[3].textContent).toContain('-0.08'); // LoRA's forgetting probe change
    const cost = within(screen.getByRole('table', { name: 'Cost' })).getAllByRole('row').slice(1);
    expect(cost[1].textContent).toContain('289 tok'); // RAG's extra context per question
    expect(cost[1].textContent).toContain('Good for policies');
    expect(cost[3].textContent).toContain('39 s'); // LoRA's training
    expect(cost[4].textContent).toContain('514.7 MiB'); // the full model on disk
    expect(screen.getByText(/pays its training back after 131 questions/)).toBeTruthy();
    // The chart draws one dot per method, and follows the axis the user picks.
    const chart = screen.getByRole('figure', { name: 'Quality against cost' });
    expect(plotIn(chart, 'token-f1 against preparation time (s): 6 methods')).toBeTruthy();
    expect(chart.querySelectorAll('g.points circle').length).toBe(6);
    await fireEvent.change(screen.getByLabelText('Quality metric'), { target: { value: 'hit-at-3' } });
    await settle();
    expect(plotIn(chart, 'hit-at-3 against preparation time (s): 1 methods')).toBeTruthy();
  });

  it('overlays the trained methods\' learning curves from their runs', async () => {
    render(CompareScreen);
    await settle();
    const curves = screen.getByRole('figure', { name: 'Learning curves' });
    expect(client.runMetrics).toHaveBeenCalledTimes(4);
    expect(plotIn(curves, 'Training loss of 3 trained methods')).toBeTruthy();
    expect(linePoints(curves, 'curve-lora')).toBe(10);
    expect(linePoints(curves, 'curve-soft-prompt')).toBe(4);
    expect(linePoints(curves, 'curve-pretrain')).toBe(0);
    const xDomain = () => plotIn(curves, 'Training loss').scale('x')!.domain;
    expect(xDomain()).toEqual([10, 100]); // LoRA logs its first step at 10% of its run
    await fireEvent.change(screen.getByLabelText('Learning curve x axis'), { target: { value: 'step' } });
    await settle();
    expect(xDomain()).toEqual([1, 10]);
  });

  it('charts quality against training data only when the report has data curves', async () => {
    const { unmount } = render(CompareScreen);
    await settle();
    expect(screen.queryByRole('figure', { name: 'Quality against training data' })).toBeNull();
    unmount();
    client.listComparisons.mockResolvedValue([withDataCurves()]);
    render(CompareScreen);
    await settle();
    const figure = screen.getByRole('figure', { name: 'Quality against training data' });
    expect(plotIn(figure, 'token-f1 against training examples: 2 trained methods')).toBeTruthy();
    expect(linePoints(figure, 'data-lora')).toBe(3);
    expect(linePoints(figure, 'data-full')).toBe(2);
    expect(plotIn(figure, 'token-f1').scale('x')!.type).toBe('log');
    await fireEvent.click(within(figure).getByLabelText('log scale'));
    await settle();
    expect(plotIn(figure, 'token-f1').scale('x')!.type).toBe('linear');
  });

  it('sets the methods\' answers side by side, most disputed first or in file order', async () => {
    render(CompareScreen);
    await settle();
    expect(client.comparisonExamples).toHaveBeenCalledWith('brightloom-support');
    const grid = screen.getByRole('table', { name: 'Answers' });
    const lines = () => within(grid).getAllByRole('row').slice(1).map((r) => r.getAttribute('data-line'));
    expect(lines()).toEqual(['2', '1']);
    const first = within(grid).getAllByRole('row')[1];
    expect(first.textContent).toContain('The frame warranty is 7 years.');
    expect(first.textContent).toContain('token-f1 0.80');
    expect(first.textContent).toContain('expected: Brightloom Support: 7 years.');
    await fireEvent.change(screen.getByLabelText('Order'), { target: { value: 'file' } });
    await settle();
    expect(lines()).toEqual(['1', '2']);
  });

  it('asks a question again in chat the way a method answered it', async () => {
    const onAsk = vi.fn();
    render(CompareScreen, { props: { onAsk } });
    await settle();
    const firstRow = within(screen.getByRole('table', { name: 'Answers' })).getAllByRole('row')[1];
    await fireEvent.click(within(firstRow).getByRole('button', { name: 'Ask in chat with LoRA / QLoRA' }));
    const [asked, method, question] = onAsk.mock.calls[0];
    expect(asked.id).toBe('brightloom-support');
    expect(method.method).toBe('lora');
    expect(method.run).toMatch(/^compare-brightloom-support-lora-/);
    expect(question).toBe('How long is the frame warranty?');
  });

  it('runs a task with progress, can stop it, and exports the report', async () => {
    let send: (event: CompareEvent) => void = () => {};
    let finish: (report: CompareReport) => void = () => {};
    client.runComparison.mockImplementation((_request, onEvent) => {
      send = onEvent;
      return new Promise((resolve) => (finish = resolve));
    });
    render(CompareScreen);
    await settle();
    await fireEvent.input(screen.getByPlaceholderText('datasets/compare-demo/task.toml'), {
      target: { value: 'task.toml' },
    });
    await fireEvent.click(screen.getByRole('button', { name: 'Compare' }));
    expect(client.runComparison.mock.calls[0][0]).toEqual({ task: 'task.toml', preset: 'quick', methods: [] });
    send({ kind: 'started', id: 'brightloom-support', methods: ['lora'] });
    send({ kind: 'stage', method: 'lora', stage: 'training', label: 'training' });
    send({ kind: 'progress', method: 'lora', done: 7, total: 40 });
    await settle();
    expect(screen.getByRole('status').textContent).toBe('LoRA / QLoRA: training — 7/40');
    await fireEvent.click(screen.getByRole('button', { name: 'Stop' }));
    expect(client.cancelComparison).toHaveBeenCalledWith('brightloom-support');
    finish(report);
    await settle();
    expect(screen.queryByRole('status')).toBeNull();

    client.exportComparison.mockResolvedValue({ html: '/w/report.html', csv: '/w/report.csv', json: '/w/report.json' });
    await fireEvent.click(screen.getByRole('button', { name: 'Export HTML and CSV' }));
    await settle();
    expect(client.exportComparison).toHaveBeenCalledWith('brightloom-support');
    expect(screen.getByTestId('exported').textContent).toContain('/w/report.html');
  });
});
