// The loss and learning-rate charts: axes with values, the validation series, the log scale, the
// hover readout, and the empty state.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import { describe, expect, it } from 'vitest';
import type { MetricPoint } from '../src/bindings/MetricPoint';
import LearningRateChart from '../src/components/runs/LearningRateChart.svelte';
import LossChart from '../src/components/runs/LossChart.svelte';
import { linePoints, plotIn, pointAt, tickLabels } from './helpers/plot';

function step(step: number, loss: number, lr = 2e-4): MetricPoint {
  return { step, loss, val_loss: null, lr, tokens_per_s: 90 };
}

function validation(step: number, val_loss: number): MetricPoint {
  return { step, loss: null, val_loss, lr: null, tokens_per_s: null };
}

// Loss falling over two orders of magnitude, with two validations.
const run: MetricPoint[] = [
  ...Array.from({ length: 50 }, (_, i) => step(i + 1, 10 * 0.9 ** i, 2e-4 * (1 - i / 50))),
  validation(25, 0.9),
  validation(50, 0.2),
];

const numeric = (label: string) => /^-?[\d.,]+(e-?\d+)?$/.test(label);

describe('LossChart', () => {
  it('labels both axes with numeric ticks', async () => {
    const { container } = render(LossChart, { points: run });
    await tick();
    const plot = plotIn(container, 'Loss');
    const x = tickLabels(plot, 'x');
    const y = tickLabels(plot, 'y');
    expect(x.length).toBeGreaterThan(2);
    expect(y.length).toBeGreaterThan(2);
    expect(x.every(numeric)).toBe(true);
    expect(y.every(numeric)).toBe(true);
    expect(plot.querySelector('g[aria-label="x-axis label"]')?.textContent).toBe('step');
    expect(plot.querySelector('g[aria-label="y-axis label"]')?.textContent).toBe('loss');
  });

  it('draws validations as a dashed line with a dot each, and names both series', async () => {
    const { container } = render(LossChart, { points: run });
    await tick();
    const plot = plotIn(container, 'Loss');
    expect(linePoints(plot, 'train')).toBe(50);
    expect(plot.querySelector('g.validation.line')?.getAttribute('stroke-dasharray')).toBeTruthy();
    expect(plot.querySelectorAll('g.validation.dots circle')).toHaveLength(2);
    const caption = container.querySelector('figcaption')?.textContent;
    expect(caption).toContain('training');
    expect(caption).toContain('validation');
  });

  it('leaves validations out of the key when there are none', async () => {
    const { container } = render(LossChart, { points: run.slice(0, 50) });
    await tick();
    expect(plotIn(container, 'Loss').querySelectorAll('g.validation.dots circle')).toHaveLength(0);
    expect(container.querySelector('figcaption')?.textContent).not.toContain('validation');
  });

  it('switches the y axis to a log scale and back', async () => {
    const { container } = render(LossChart, { points: run });
    await tick();
    const linear = tickLabels(plotIn(container, 'Loss'), 'y');
    expect(plotIn(container, 'Loss').scale('y')?.type).toBe('linear');

    const toggle = screen.getByRole('checkbox', { name: 'log scale' });
    await fireEvent.click(toggle);
    await tick();
    const plot = plotIn(container, 'Loss');
    expect(plot.scale('y')?.type).toBe('log');
    expect(tickLabels(plot, 'y')).not.toEqual(linear);
    // Decades are labelled on a log axis.
    expect(tickLabels(plot, 'y')).toContain('1');

    await fireEvent.click(toggle);
    await tick();
    expect(tickLabels(plotIn(container, 'Loss'), 'y')).toEqual(linear);
  });

  it('can start on a log scale', async () => {
    const { container } = render(LossChart, { points: run, log: true });
    await tick();
    expect(plotIn(container, 'Loss').scale('y')?.type).toBe('log');
    expect((screen.getByRole('checkbox', { name: 'log scale' }) as HTMLInputElement).checked).toBe(true);
  });

  it('reads out the step and value of the nearest point under the pointer', async () => {
    const { container } = render(LossChart, { points: run });
    await tick();
    const readout = screen.getByTestId('loss-readout');
    expect(readout.textContent?.trim()).toBe('');
    const plot = plotIn(container, 'Loss');
    const [clientX, clientY] = pointAt(plot, 10.3, 10 * 0.9 ** 9);
    plot.dispatchEvent(new MouseEvent('pointermove', { clientX, clientY }));
    await tick();
    expect(readout.textContent).toContain('training · step 10 · loss 3.874');

    // At a validation step the nearer of the two points wins.
    const [vx, vy] = pointAt(plot, 50, 0.2);
    plot.dispatchEvent(new MouseEvent('pointermove', { clientX: vx, clientY: vy }));
    await tick();
    expect(readout.textContent).toContain('validation · step 50 · loss 0.2000');
  });

  it('keeps the readout while a live run redraws', async () => {
    const { container, rerender } = render(LossChart, { points: run.slice(0, 10) });
    await tick();
    const plot = plotIn(container, 'Loss');
    const [clientX, clientY] = pointAt(plot, 5, 10 * 0.9 ** 4);
    plot.dispatchEvent(new MouseEvent('pointermove', { clientX, clientY }));
    await rerender({ points: run.slice(0, 11) });
    await tick();
    expect(plotIn(container, 'Loss')).not.toBe(plot);
    expect(screen.getByTestId('loss-readout').textContent).toMatch(/step \d+ · loss/);
  });

  it('says when the curve will appear', () => {
    render(LossChart, { points: [] });
    expect(screen.getByText('The curve appears after the first step.')).toBeTruthy();
  });
});

describe('LearningRateChart', () => {
  it('labels the axes, with learning rates in exponent notation', async () => {
    const { container } = render(LearningRateChart, { points: run });
    await tick();
    const plot = plotIn(container, 'Learning rate');
    expect(tickLabels(plot, 'x').every(numeric)).toBe(true);
    const y = tickLabels(plot, 'y');
    expect(y.length).toBeGreaterThan(1);
    expect(y.every((label) => label === '0' || /^\d(\.\d+)?e-\d+$/.test(label))).toBe(true);
    expect(y).toContain('1e-4');
    expect(plot.querySelector('g[aria-label="y-axis label"]')?.textContent).toBe('learning rate');
    expect(linePoints(plot, 'lr')).toBe(50);
  });

  it('reads out the step and rate under the pointer', async () => {
    const { container } = render(LearningRateChart, { points: run });
    await tick();
    const plot = plotIn(container, 'Learning rate');
    const [clientX, clientY] = pointAt(plot, 1, 2e-4);
    plot.dispatchEvent(new MouseEvent('pointermove', { clientX, clientY }));
    await tick();
    expect(screen.getByTestId('lr-readout').textContent).toContain('step 1 · lr 2e-4');
  });

  it('draws nothing without learning rates', () => {
    const { container } = render(LearningRateChart, { points: [validation(1, 2)] });
    expect(container.querySelector('figure')).toBeNull();
  });
});
