// The prompt studio's A/B test against a mocked backend: the sides it starts with, the request
// it sends, each side's progress, the scores with their paired intervals and verdicts, the
// questions answered differently, and a stop that keeps the answers.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { AbEvent } from '../src/bindings/AbEvent';
import type { EvalDiff } from '../src/bindings/EvalDiff';
import type { EvalListItem } from '../src/bindings/EvalListItem';
import type { PromptSummary } from '../src/bindings/PromptSummary';
import type { TemplateAbRequest } from '../src/bindings/TemplateAbRequest';
import AbTest from '../src/components/prompts/AbTest.svelte';
import { abSide, abVerdict } from '../src/lib/prompts';
import { settle } from './helpers/fake-chat-transport';

const client = vi.hoisted(() => ({
  templateAbTest: vi.fn<(request: TemplateAbRequest, onEvent: (event: AbEvent) => void) => Promise<EvalDiff>>(),
  cancelTemplateAbTest: vi.fn<(name: string) => Promise<void>>(),
}));

vi.mock('../src/lib/client', () => client);

const SUPPORT: PromptSummary = {
  name: 'support',
  versions: [
    { version: 1, saved_unix: 0, note: '' },
    { version: 2, saved_unix: 0, note: 'house format' },
    { version: 3, saved_unix: 0, note: 'shorter' },
  ],
};

/** An evaluation as the diff names it; only its id matters here. */
function evaluation(id: string): EvalListItem {
  return { id, status: 'completed', answered: 3, summary: null } as unknown as EvalListItem;
}

const estimate = (value: number, low: number, high: number) => ({ value, low, high, rows: 3 });

const DIFF: EvalDiff = {
  a: evaluation('questions-v2'),
  b: evaluation('questions-v3'),
  paired_rows: 3,
  metrics: [
    {
      metric: 'token-f1',
      label: 'token-f1',
      higher_is_better: true,
      a: estimate(0.4, 0.3, 0.5),
      b: estimate(0.7, 0.6, 0.8),
      difference: estimate(0.3, 0.1, 0.5),
    },
    {
      metric: 'exact-match',
      label: 'exact-match',
      higher_is_better: true,
      a: estimate(0.33, 0, 1),
      b: estimate(0.33, 0, 1),
      difference: estimate(0, -0.33, 0.33),
    },
  ],
  rows: [
    {
      index: 1,
      line: 2,
      question: 'Where is my order?',
      reference: 'Brightloom Support: on its way. Ride on!',
      a_answer: 'It is coming.',
      b_answer: 'Brightloom Support: on its way. Ride on!',
      a_scores: { 'token-f1': 0.1 },
      b_scores: { 'token-f1': 1 },
    },
  ],
};

beforeEach(() => {
  client.templateAbTest.mockReset();
  client.cancelTemplateAbTest.mockReset().mockResolvedValue();
});

describe('reading an A/B test', () => {
  it('names the side the paired interval favours, or neither when it holds 0', () => {
    expect(abVerdict(DIFF.metrics[0])).toBe('b');
    expect(abVerdict(DIFF.metrics[1])).toBe('tie');
    expect(abVerdict({ ...DIFF.metrics[0], higher_is_better: false })).toBe('a');
    expect(abSide('support', '')).toBeNull();
    expect(abSide('support', '2')).toEqual({ name: 'support', version: 2 });
  });
});

describe('the A/B test', () => {
  it('sets the previous version against the latest and shows what the rows support', async () => {
    let finish: (diff: EvalDiff) => void = () => {};
    client.templateAbTest.mockImplementation((_request, onEvent) => {
      onEvent({ side: 'a', event: { kind: 'reused', id: 'questions-v2' } });
      onEvent({ side: 'b', event: { kind: 'started', id: 'questions-v3', total: 3, done: 0 } });
      return new Promise((resolve) => (finish = resolve));
    });
    render(AbTest, { template: SUPPORT, model: 'smollm2-135m-instruct' });
    await settle();

    expect((screen.getByLabelText('Side A') as HTMLSelectElement).value).toBe('2');
    expect((screen.getByLabelText('Side B') as HTMLSelectElement).value).toBe('3');
    const run = screen.getByRole('button', { name: 'Run A/B test' }) as HTMLButtonElement;
    expect(run.disabled).toBe(true);
    await fireEvent.input(screen.getByLabelText('Evaluation file'), { target: { value: ' /data/questions.jsonl ' } });
    await fireEvent.click(run);
    expect(client.templateAbTest.mock.calls[0][0]).toEqual({
      data: '/data/questions.jsonl',
      model: 'smollm2-135m-instruct',
      a: { name: 'support', version: 2 },
      b: { name: 'support', version: 3 },
      max_tokens: 128,
      limit: null,
    });
    await settle();
    expect(screen.getByRole('status').textContent).toContain('A (v2 · house format): answered before');
    expect(screen.getByRole('status').textContent).toContain('B (v3 · shorter): 0 of 3 answered');

    finish(DIFF);
    await settle();
    const rows = within(screen.getByRole('table', { name: 'A/B scores' })).getAllByRole('row').slice(1);
    expect(rows[0].getAttribute('data-verdict')).toBe('b');
    expect(rows[0].textContent).toContain('+0.30');
    expect(rows[0].textContent).toContain('B better');
    expect(rows[1].textContent).toContain('no clear difference');
    const differing = screen.getByRole('list', { name: 'Answers that differ' });
    expect(differing.textContent).toContain('Where is my order?');
    expect(differing.textContent).toContain('It is coming.');
  });

  it('sets a version against no template, refuses two equal sides, and keeps answers on stop', async () => {
    client.templateAbTest.mockRejectedValue({ code: 'cancelled', message: 'the A/B test was stopped' });
    render(AbTest, { template: { ...SUPPORT, versions: SUPPORT.versions.slice(0, 1) }, model: 'smollm2-135m-instruct' });
    await settle();
    expect((screen.getByLabelText('Side A') as HTMLSelectElement).value).toBe('');
    await fireEvent.input(screen.getByLabelText('Evaluation file'), { target: { value: '/data/q.jsonl' } });
    await fireEvent.change(screen.getByLabelText('Side B'), { target: { value: '' } });
    expect((screen.getByRole('button', { name: 'Run A/B test' }) as HTMLButtonElement).disabled).toBe(true);
    await fireEvent.change(screen.getByLabelText('Side B'), { target: { value: '1' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Run A/B test' }));
    await settle();
    expect(client.templateAbTest.mock.calls[0][0].a).toBeNull();
    expect(screen.getByRole('status').textContent).toContain('stopped; the answers so far are kept');
    expect(screen.queryByRole('alert')).toBeNull();
  });
});
