// The Runs screen against a mocked backend: the empty state, the list, and a run's curves.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ExportEvent } from '../src/bindings/ExportEvent';
import type { ExportReport } from '../src/bindings/ExportReport';
import type { ExportRequest } from '../src/bindings/ExportRequest';
import type { MetricPoint } from '../src/bindings/MetricPoint';
import type { RunListItem } from '../src/bindings/RunListItem';
import type { TrainEvent } from '../src/bindings/TrainEvent';
import { trainingJobs } from '../src/lib/training-jobs.svelte';
import RunsScreen from '../src/screens/RunsScreen.svelte';
import { settle } from './helpers/fake-chat-transport';
import { linePoints } from './helpers/plot';
import { runItem as run } from './helpers/reports';

const client = vi.hoisted(() => ({
  listRuns: vi.fn<() => Promise<RunListItem[]>>(),
  runMetrics: vi.fn<(id: string) => Promise<MetricPoint[]>>(),
  resumeTraining: vi.fn<(id: string, onEvent: (event: TrainEvent) => void) => Promise<RunListItem>>(),
  cancelTraining: vi.fn<(id: string) => Promise<void>>(),
  exportResult: vi.fn<(request: ExportRequest, onEvent: (event: ExportEvent) => void) => Promise<ExportReport>>(),
  cancelExport: vi.fn<(source: string) => Promise<void>>(),
}));

vi.mock('../src/lib/client', () => client);

beforeEach(() => {
  trainingJobs.jobs = [];
  trainingJobs.launched = null;
  client.listRuns.mockReset();
  client.runMetrics.mockReset().mockResolvedValue([
    { step: 1, loss: 3, val_loss: null, lr: 1e-4, tokens_per_s: 80 },
    { step: 2, loss: 2, val_loss: null, lr: 1e-4, tokens_per_s: 80 },
    { step: 2, loss: null, val_loss: 2.2, lr: null, tokens_per_s: null },
  ]);
});

describe('RunsScreen', () => {
  it('says what to do when there are no runs', async () => {
    client.listRuns.mockResolvedValue([]);
    const onNewRun = vi.fn();
    render(RunsScreen, { onNewRun });
    await settle();
    expect(screen.getByText(/No runs yet/)).toBeTruthy();
    await fireEvent.click(screen.getByRole('button', { name: 'Start a run' }));
    expect(onNewRun).toHaveBeenCalled();
  });

  it('lists runs, shows the newest one\'s curves and switches on click', async () => {
    const onGpu: RunListItem = {
      ...run('qlora-b', 'cancelled'),
      device: 'cuda:0',
      gpu: { gpu: 0, peak_memory_bytes: 14 * 1024 ** 3, mean_utilization_percent: 80, energy_joules: 3100 },
      cpu_energy: { joules: 820, packages: 1 },
    };
    client.listRuns.mockResolvedValue([run('qlora-a'), onGpu]);
    const onOpenChat = vi.fn();
    const { container } = render(RunsScreen, { onOpenChat });
    await settle();
    const table = screen.getByRole('table', { name: 'Runs' }).textContent;
    expect(table).toContain('600.0 MiB');
    expect(table).toContain('cpu');
    expect(table).toContain('cuda:0 · 14.0 GiB · 3.1 kJ · CPU 0.8 kJ');
    expect(client.runMetrics).toHaveBeenCalledWith('qlora-a');
    expect(linePoints(container, 'train')).toBe(2);
    expect(linePoints(container, 'validation')).toBe(1);
    // The learning rate has its own chart, one point per training step.
    expect(linePoints(container, 'lr')).toBe(2);
    expect(screen.getByRole('figure', { name: 'Learning rate' }).textContent).toContain('1e-4');
    expect(container.querySelectorAll('g.validation.dots circle')).toHaveLength(1);
    await fireEvent.click(screen.getByRole('button', { name: 'Open in chat' }));
    expect(onOpenChat).toHaveBeenCalledWith(run('qlora-a'));
    // A finished result can be exported in the forms its method allows.
    const exportPanel = screen.getByRole('region', { name: 'Export' });
    expect(exportPanel.querySelectorAll('input[type=radio]')).toHaveLength(3);

    await fireEvent.click(screen.getByText('qlora-b'));
    await settle();
    expect(client.runMetrics).toHaveBeenLastCalledWith('qlora-b');
    expect(screen.queryByRole('button', { name: 'Open in chat' })).toBeNull();
    expect(screen.queryByRole('region', { name: 'Export' })).toBeNull();
  });

  it('resumes a cancelled run from its checkpoint, with progress and a cancel button', async () => {
    const stopped = { ...run('lora-smollm2-135m-instruct-7', 'cancelled'), steps: 2, total_steps: 4 };
    client.listRuns.mockResolvedValue([stopped, run('qlora-done')]);
    let emit: (event: TrainEvent) => void = () => {};
    let finish: (run: RunListItem) => void = () => {};
    client.resumeTraining.mockImplementation((_id, onEvent) => {
      emit = onEvent;
      return new Promise((resolve) => (finish = resolve));
    });
    client.cancelTraining.mockResolvedValue();
    render(RunsScreen, { onOpenChat: vi.fn() });
    await settle();
    expect(screen.queryByRole('button', { name: 'Open in chat' })).toBeNull();
    await fireEvent.click(screen.getByRole('button', { name: 'Resume' }));
    expect(client.resumeTraining.mock.calls[0][0]).toBe('lora-smollm2-135m-instruct-7');
    expect(screen.getByText('Loading the last checkpoint…')).toBeTruthy();
    emit({ kind: 'started', run_id: 'lora-smollm2-135m-instruct-7' });
    emit({ kind: 'step', step: 3, total_steps: 4, loss: 1.2, lr: 1e-4, tokens_per_s: 90, elapsed_s: 36, rss_bytes: 1024 ** 3 });
    await settle();
    expect(screen.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('75');
    expect(screen.getByText('step 3/4 · loss 1.2000 · 90 tokens/s · 1.0 GiB · about 12 s left')).toBeTruthy();
    await fireEvent.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(client.cancelTraining).toHaveBeenCalledWith('lora-smollm2-135m-instruct-7');

    const done: RunListItem = { ...stopped, status: 'completed', can_resume: false, steps: 4, has_artifact: true };
    client.listRuns.mockResolvedValue([done, run('qlora-done')]);
    finish(done);
    await settle();
    expect(screen.queryByRole('progressbar')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Resume' })).toBeNull();
    expect(screen.getByRole('button', { name: 'Open in chat' })).toBeTruthy();
  });

  it('follows a run that trains in another process, without offering to resume it', async () => {
    const elsewhere: RunListItem = {
      ...run('lora-cli', 'running'),
      steps: 0,
      holder: { kind: 'train', target: 'lora-cli', pid: 4242, program: 'tunelab', started_at: 1 },
    };
    client.listRuns.mockResolvedValue([elsewhere]);
    render(RunsScreen, {});
    await settle();
    expect(screen.getByText(/Training in tunelab \(pid 4242\)/)).toBeTruthy();
    expect(screen.queryByRole('button', { name: 'Resume' })).toBeNull();
    expect(screen.queryByRole('button', { name: 'Cancel' })).toBeNull();
    // Its curve is read again while it trains.
    await vi.waitFor(() => expect(client.runMetrics.mock.calls.length).toBeGreaterThanOrEqual(2));
  });

  it('says why a failed run stopped and offers to resume it from its checkpoint', async () => {
    const failed: RunListItem = { ...run('lora-f', 'failed'), error: { code: 'io', message: 'runs/lora-f: no space left on device' } };
    client.listRuns.mockResolvedValue([failed]);
    render(RunsScreen, {});
    await settle();
    expect(screen.getByText('Stopped by an error: runs/lora-f: no space left on device')).toBeTruthy();
    expect(screen.getByRole('button', { name: 'Resume' })).toBeTruthy();
  });

  it('opens on the run picked from the jobs list', async () => {
    client.listRuns.mockResolvedValue([run('qlora-new'), run('qlora-old')]);
    render(RunsScreen, { initialRun: 'qlora-old' });
    await settle();
    expect(client.runMetrics).toHaveBeenCalledWith('qlora-old');
    expect(client.runMetrics).not.toHaveBeenCalledWith('qlora-new');
  });

  it('offers no resume for a completed run', async () => {
    client.listRuns.mockResolvedValue([run('qlora-done')]);
    render(RunsScreen, {});
    await settle();
    expect(screen.queryByRole('button', { name: 'Resume' })).toBeNull();
  });
});
