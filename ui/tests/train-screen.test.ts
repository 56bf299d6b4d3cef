// The Train wizard against a mocked backend: method and model, the dataset check, settings, the
// review with the memory plan, a run streaming its progress into the chart, errors, and opening
// the result in chat.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { DatasetPreview } from '../src/bindings/DatasetPreview';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { RunListItem } from '../src/bindings/RunListItem';
import type { TrainEvent } from '../src/bindings/TrainEvent';
import type { TrainPlan } from '../src/bindings/TrainPlan';
import type { TrainRequest } from '../src/bindings/TrainRequest';
import { trainingJobs } from '../src/lib/training-jobs.svelte';
import TrainScreen from '../src/screens/TrainScreen.svelte';
import { settle } from './helpers/fake-chat-transport';
import { linePoints } from './helpers/plot';
import { gpuReport, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  backendAvailable: vi.fn(() => false),
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
  planTraining: vi.fn<(request: TrainRequest) => Promise<TrainPlan>>(),
  startTraining: vi.fn<(request: TrainRequest, onEvent: (event: TrainEvent) => void) => Promise<RunListItem>>(),
  cancelTraining: vi.fn<(id: string) => Promise<void>>(),
  previewDataset: vi.fn<(file: string, model: string, seqLen: number) => Promise<DatasetPreview>>(),
}));

vi.mock('../src/lib/client', () => client);

function plan(fits: boolean): TrainPlan {
  return {
    model: 'smollm2-135m-instruct',
    method: 'lora',
    device: 'cpu',
    batch_size: 4,
    seq_len: 256,
    activation_checkpointing: true,
    trainable_parameters: 4884480,
    estimate: {
      weights_bytes: 538_000_000,
      trainable_bytes: 98_000_000,
      activations_bytes: 150_000_000,
      working_bytes: 270_000_000,
      runtime_bytes: 33_000_000,
      total_bytes: 1_089_000_000,
    },
    available_bytes: fits ? 16e9 : 5e8,
    fits,
    advice: fits ? [] : ['use QLoRA (the base stays in 4 bits) with checkpointing: about 520 MiB'],
  };
}

function finishedRun(): RunListItem {
  return {
    id: 'lora-smollm2-135m-instruct-1',
    method: 'lora',
    model: 'smollm2-135m-instruct',
    status: 'completed',
    holder: null,
    error: null,
    can_resume: false,
    steps: 2,
    total_steps: 2,
    final_loss: 1.5,
    val_loss: 1.4,
    val_perplexity: 4.05,
    tokens_seen: 900,
    peak_rss_bytes: 1e9,
    wall_time_s: 12,
    device: 'cpu',
    gpu: null,
    cpu_energy: null,
    started_at: 1,
    has_artifact: true,
    export_formats: ['gguf', 'merged', 'peft'],
  };
}

function preview(usable = 2): DatasetPreview {
  return {
    report: {
      file: '/data/train.jsonl',
      format: 'messages',
      rows_total: 3,
      rows_usable: usable,
      issues: [
        {
          file: '/data/train.jsonl',
          line: 3,
          field: 'messages[0].role',
          kind: 'unknown_role',
          message: 'unknown role `wizard`',
          excluded: true,
        },
      ],
      roles: { system: 0, user: 2, assistant: 2 },
      tokens: { max_len: 256, min: 20, median: 25, max: 30, truncated: 0, trainable_tokens: 20 },
    },
    samples: ['<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>'],
  };
}

beforeEach(() => {
  client.listModels.mockReset().mockResolvedValue([smolModel()]);
  client.planTraining.mockReset().mockResolvedValue(plan(true));
  client.startTraining.mockReset();
  client.cancelTraining.mockReset().mockResolvedValue();
  client.previewDataset.mockReset().mockResolvedValue(preview());
  trainingJobs.jobs = [];
  trainingJobs.launched = null;
});

const click = (name: string | RegExp) => fireEvent.click(screen.getByRole('button', { name }));

/** Steps 1 and 2: the default method and model, then a dataset that checks out. */
async function fillDataset(): Promise<void> {
  await settle();
  await click('Next: dataset');
  await fireEvent.input(screen.getByLabelText('Dataset file'), { target: { value: '/data/train.jsonl' } });
}

/** On to the review, where the memory plan is checked. */
async function toReview(): Promise<void> {
  await fillDataset();
  await click('Next: settings');
  await settle();
  await click('Next: review');
  await settle();
}

describe('TrainScreen', () => {
  it('shows the memory plan with what to change when the run does not fit', async () => {
    client.planTraining.mockResolvedValue(plan(false));
    render(TrainScreen);
    await toReview();
    const section = screen.getByRole('region', { name: 'Memory plan' });
    expect(section.textContent).toContain('does not fit');
    expect(section.textContent).toContain('use QLoRA');
    const request = client.planTraining.mock.calls[0][0];
    expect(request).toMatchObject({ method: 'lora', model: 'smollm2-135m-instruct', data: '/data/train.jsonl', lr: null });
    expect((screen.getByRole('button', { name: 'Start training' }) as HTMLButtonElement).disabled).toBe(true);

    // Back to settings, a smaller batch, and the plan is checked again on the way to the review.
    client.planTraining.mockResolvedValue(plan(true));
    await click('Back');
    await fireEvent.input(screen.getByLabelText('Batch size'), { target: { value: '1' } });
    await click('Next: review');
    await settle();
    expect(client.planTraining.mock.calls.at(-1)![0].batch_size).toBe(1);
    expect(client.planTraining.mock.calls.at(-1)![0]).toMatchObject({ rank: 16, alpha: 32 });
    expect(client.planTraining.mock.calls.at(-1)![0].virtual_tokens).toBeUndefined();
    expect(screen.getByRole('region', { name: 'Review' }).textContent).toContain('batch 1');
    expect((screen.getByRole('button', { name: 'Start training' }) as HTMLButtonElement).disabled).toBe(false);
  });

  it('streams steps into the progress bar and the chart, then opens the result in chat', async () => {
    let emit: (event: TrainEvent) => void = () => {};
    let finish: (run: RunListItem) => void = () => {};
    client.startTraining.mockImplementation((_request, onEvent) => {
      emit = onEvent;
      return new Promise((resolve) => (finish = resolve));
    });
    const onOpenChat = vi.fn();
    const { container } = render(TrainScreen, { onOpenChat });
    await toReview();
    await fireEvent.click(screen.getByRole('button', { name: 'Start training' }));
    expect(screen.getByRole('button', { name: 'Cancel' })).toBeTruthy();

    emit({ kind: 'started', run_id: 'lora-smollm2-135m-instruct-1' });
    emit({ kind: 'step', step: 1, total_steps: 2, loss: 2.5, lr: 2e-4, tokens_per_s: 90, elapsed_s: 5, rss_bytes: 1e9 });
    emit({ kind: 'step', step: 2, total_steps: 2, loss: 1.5, lr: 1e-4, tokens_per_s: 95, elapsed_s: 10, rss_bytes: 1e9 });
    await tick();
    expect(screen.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('100');
    expect(screen.getByText(/step 2\/2 · loss 1\.5000/)).toBeTruthy();
    expect(linePoints(container, 'train')).toBe(2);
    // The learning rate follows its schedule in a chart of its own.
    expect(linePoints(container, 'lr')).toBe(2);
    // On a GPU, its live readings; not a point of the charts.
    expect(screen.queryByLabelText('GPU now')).toBeNull();
    emit({ kind: 'gpu', gpu: gpuReport().gpus[0] });
    await tick();
    expect(screen.getByLabelText('GPU now').textContent).toMatch(
      /GPU 0 · memory 5\.2 \/ 24\.0 GiB · busy\s+37% · 54 °C · 182 \/ 450 W/,
    );
    expect(linePoints(container, 'train')).toBe(2);

    finish(finishedRun());
    await settle();
    expect(screen.getByText(/Run completed/)).toBeTruthy();
    await fireEvent.click(screen.getByRole('button', { name: 'Open in chat' }));
    expect(onOpenChat).toHaveBeenCalledWith(finishedRun());
  });

  it('keeps training when the screen is left, and shows the run again on return', async () => {
    let emit: (event: TrainEvent) => void = () => {};
    let finish: (run: RunListItem) => void = () => {};
    client.startTraining.mockImplementation((_request, onEvent) => {
      emit = onEvent;
      return new Promise((resolve) => (finish = resolve));
    });
    const first = render(TrainScreen);
    await toReview();
    await fireEvent.click(screen.getByRole('button', { name: 'Start training' }));
    emit({ kind: 'started', run_id: 'lora-smollm2-135m-instruct-1' });
    emit({ kind: 'step', step: 1, total_steps: 4, loss: 2.5, lr: 2e-4, tokens_per_s: 90, elapsed_s: 5, rss_bytes: null });
    await tick();
    first.unmount();

    // Off screen, the run goes on.
    emit({ kind: 'step', step: 2, total_steps: 4, loss: 2.0, lr: 2e-4, tokens_per_s: 90, elapsed_s: 10, rss_bytes: null });
    const { container } = render(TrainScreen);
    await settle();
    expect(screen.getByRole('heading', { name: 'lora-smollm2-135m-instruct-1' })).toBeTruthy();
    expect(screen.getByText(/step 2\/4 · loss 2\.0000 · 90 tokens\/s · about 10 s left/)).toBeTruthy();
    expect(linePoints(container, 'train')).toBe(2);
    emit({ kind: 'step', step: 3, total_steps: 4, loss: 1.5, lr: 2e-4, tokens_per_s: 90, elapsed_s: 15, rss_bytes: null });
    await settle();
    expect(linePoints(container, 'train')).toBe(3);

    await fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(client.cancelTraining).toHaveBeenCalledWith('lora-smollm2-135m-instruct-1');
    expect(screen.getByRole('button', { name: 'Stopping at the next step…' })).toBeTruthy();
    finish({ ...finishedRun(), status: 'cancelled', can_resume: true, has_artifact: false });
    await settle();
    expect(screen.getByText(/Run cancelled/)).toBeTruthy();
    expect(screen.queryByRole('button', { name: /Cancel|Stopping/ })).toBeNull();
  });

  it('reports a refused run and offers cancel only while running', async () => {
    client.startTraining.mockRejectedValue({ code: 'wont_fit', message: 'this run needs about 9 GiB' });
    render(TrainScreen);
    await toReview();
    await fireEvent.click(screen.getByRole('button', { name: 'Start training' }));
    await settle();
    expect(screen.getByText(/needs about 9 GiB/)).toBeTruthy();
    expect(screen.queryByRole('button', { name: 'Cancel' })).toBeNull();
  });

  it('previews the dataset: usable rows, lengths, problems by line and rendered examples', async () => {
    render(TrainScreen);
    await fillDataset();
    await click('Check dataset');
    await settle();
    expect(client.previewDataset).toHaveBeenCalledWith('/data/train.jsonl', 'smollm2-135m-instruct', 256);
    const section = screen.getByRole('region', { name: 'Dataset' });
    expect(section.textContent).toContain('2 of 3 rows usable');
    expect(section.textContent).toContain('line 3: messages[0].role: unknown role `wizard`');
    expect(section.textContent).toContain('20 / 25 / 30');
    expect(section.querySelector('pre')?.textContent).toContain('<|im_start|>assistant');
    // Already checked: going on does not ask again.
    await click('Next: settings');
    await settle();
    expect(client.previewDataset).toHaveBeenCalledTimes(1);
    expect(screen.getByRole('region', { name: 'Settings' })).toBeTruthy();
  });

  it('does not go past a dataset without usable rows', async () => {
    client.previewDataset.mockResolvedValue(preview(0));
    render(TrainScreen);
    await fillDataset();
    await click('Next: settings');
    await settle();
    expect(screen.queryByRole('region', { name: 'Settings' })).toBeNull();
    expect(screen.getByRole('alert').textContent).toMatch(/no usable rows/);
  });

  it('shows each method with its explanation and its default learning rate', async () => {
    render(TrainScreen);
    await settle();
    await fireEvent.click(screen.getByRole('radio', { name: /QLoRA/ }));
    await click('Next: dataset');
    await fireEvent.input(screen.getByLabelText('Dataset file'), { target: { value: '/data/train.jsonl' } });
    await click('Next: settings');
    await settle();
    expect(screen.getByText(/QLoRA's default, 2e-4/)).toBeTruthy();
    // The step bar goes back to any step reached.
    await fireEvent.click(screen.getByRole('button', { name: /Method and model/ }));
    await fireEvent.click(screen.getByRole('radio', { name: /Soft prompt/ }));
    await fireEvent.click(screen.getByRole('button', { name: /Settings/ }));
    expect(screen.getByText(/Soft prompt's default, 3e-2/)).toBeTruthy();
    // Each method's own settings: virtual tokens for a soft prompt, not a LoRA rank.
    expect(screen.queryByLabelText('Rank')).toBeNull();
    await fireEvent.input(screen.getByLabelText('Virtual tokens'), { target: { value: '8' } });
    await click('Next: review');
    await settle();
    expect(client.planTraining.mock.calls.at(-1)![0]).toMatchObject({ method: 'soft-prompt', virtual_tokens: 8 });
    expect(client.planTraining.mock.calls.at(-1)![0].rank).toBeUndefined();
    expect(screen.getByRole('region', { name: 'Review' }).textContent).toContain('8 virtual tokens');
    expect((screen.getByRole('button', { name: /Run/ }) as HTMLButtonElement).disabled).toBe(true);
  });

  it('keeps the dataset step closed until a file is named', async () => {
    render(TrainScreen);
    await settle();
    await click('Next: dataset');
    const next = screen.getByRole('button', { name: 'Next: settings' }) as HTMLButtonElement;
    expect(next.disabled).toBe(true);
    await fireEvent.input(screen.getByLabelText('Dataset file'), { target: { value: '/data/train.jsonl' } });
    expect(next.disabled).toBe(false);
  });
});
