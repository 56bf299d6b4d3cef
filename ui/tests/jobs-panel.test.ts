// The sidebar's jobs list against a mocked backend: jobs of this app and of other processes, a
// run opened from it, and this app's run cancelled from it.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ListedJob } from '../src/bindings/ListedJob';
import JobsPanel from '../src/components/JobsPanel.svelte';
import { trainingJobs } from '../src/lib/training-jobs.svelte';
import { settle } from './helpers/fake-chat-transport';

const client = vi.hoisted(() => ({
  listJobs: vi.fn<() => Promise<ListedJob[]>>(),
  cancelTraining: vi.fn<(id: string) => Promise<void>>(),
}));

vi.mock('../src/lib/client', () => client);

const job = (over: Partial<ListedJob>): ListedJob => ({
  here: true,
  kind: 'train',
  target: 'lora-smollm2-135m-instruct-9',
  pid: 100,
  program: 'tunelab-app',
  started_at: 1,
  ...over,
});

beforeEach(() => {
  trainingJobs.jobs = [];
  client.listJobs.mockReset();
  client.cancelTraining.mockReset().mockResolvedValue();
});

describe('JobsPanel', () => {
  it('shows nothing while nothing runs', async () => {
    client.listJobs.mockResolvedValue([]);
    render(JobsPanel, { onOpenRun: vi.fn() });
    await settle();
    expect(screen.queryByRole('region', { name: 'Jobs' })).toBeNull();
  });

  it('lists every process\'s jobs, opens a run and cancels only this app\'s', async () => {
    client.listJobs.mockResolvedValue([
      job({}),
      job({ here: false, target: 'full-cli-3', pid: 4242, program: 'tunelab' }),
      job({ here: false, kind: 'knowledge', target: 'knowledge base `docs`', pid: 4243, program: 'tunelab' }),
    ]);
    const onOpenRun = vi.fn();
    render(JobsPanel, { onOpenRun });
    await settle();
    const panel = screen.getByRole('region', { name: 'Jobs' });
    expect(panel.textContent).toContain('Knowledge base');
    expect(panel.textContent).toContain('tunelab · pid 4242');
    // Only the app's own run has a cancel button; the others are stopped where they run.
    expect(screen.queryByRole('button', { name: 'Cancel full-cli-3' })).toBeNull();
    await fireEvent.click(screen.getByRole('button', { name: 'Cancel lora-smollm2-135m-instruct-9' }));
    expect(client.cancelTraining).toHaveBeenCalledWith('lora-smollm2-135m-instruct-9');
    await fireEvent.click(screen.getByText('full-cli-3'));
    expect(onOpenRun).toHaveBeenCalledWith('full-cli-3');
  });
});
