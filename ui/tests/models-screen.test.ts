// The Models screen against a mocked backend: the installed list with remove (and what happens
// to the files), adding a path, and a hub download with progress, stop and errors.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { DownloadProgress } from '../src/bindings/DownloadProgress';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { PullRequest } from '../src/bindings/PullRequest';
import ModelsScreen from '../src/screens/ModelsScreen.svelte';
import { settle } from './helpers/fake-chat-transport';
import { brokenModel, embeddingModel, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  backendAvailable: vi.fn(() => false),
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
  addModel: vi.fn<(path: string, name?: string) => Promise<ModelEntry>>(),
  removeModel: vi.fn<(name: string) => Promise<void>>(),
  pullModel: vi.fn<(request: PullRequest, onProgress: (e: DownloadProgress) => void) => Promise<ModelEntry>>(),
  cancelPull: vi.fn<(repo: string) => Promise<void>>(),
}));

vi.mock('../src/lib/client', () => client);

const qwen: ModelEntry = {
  ...smolModel(),
  name: 'qwen2.5-0.5b-instruct-gguf',
  path: '/home/me/.tunelab/models/qwen2.5-0.5b-instruct-gguf/qwen2.5-0.5b-instruct-q4_k_m.gguf',
  architecture: 'qwen2',
  quantization: 'Q4_K_M',
  context_length: 32768,
};

beforeEach(() => {
  for (const f of Object.values(client)) f.mockReset();
  client.backendAvailable.mockReturnValue(false);
  client.listModels.mockResolvedValue([smolModel(), embeddingModel(), brokenModel()]);
});

describe('ModelsScreen', () => {
  it('lists the installed models and removes one after saying what happens to its files', async () => {
    client.removeModel.mockResolvedValue();
    render(ModelsScreen, {});
    await settle();
    expect(screen.getByText('smollm2-135m-instruct')).toBeTruthy();
    expect(screen.getByText(/unexpected end of file/)).toBeTruthy();

    // A model registered in place keeps its files.
    await fireEvent.click(screen.getByRole('button', { name: 'Remove qwen2.5-0.5b-instruct' }));
    expect(screen.getByRole('alertdialog').textContent).toMatch(/stay where they are/);
    await fireEvent.click(screen.getByRole('button', { name: 'Keep' }));
    expect(screen.queryByRole('alertdialog')).toBeNull();
    expect(client.removeModel).not.toHaveBeenCalled();

    // A downloaded one has its files deleted.
    await fireEvent.click(screen.getByRole('button', { name: 'Remove smollm2-135m-instruct' }));
    expect(screen.getByRole('alertdialog').textContent).toMatch(/are deleted/);
    client.listModels.mockResolvedValue([embeddingModel(), brokenModel()]);
    await fireEvent.click(screen.getByRole('button', { name: 'Remove' }));
    await settle();
    expect(client.removeModel).toHaveBeenCalledWith('smollm2-135m-instruct');
    expect(screen.queryByText('smollm2-135m-instruct')).toBeNull();
  });

  it('adds a pasted path under an optional name and reports what it found', async () => {
    client.addModel.mockResolvedValue(qwen);
    const onChat = vi.fn();
    render(ModelsScreen, { onChat });
    await settle();
    const add = screen.getByRole('button', { name: 'Add' }) as HTMLButtonElement;
    expect(add.disabled).toBe(true);
    await fireEvent.input(screen.getByRole('textbox', { name: 'Model path' }), {
      target: { value: '"/models/qwen.gguf"\n' },
    });
    await fireEvent.input(screen.getByRole('textbox', { name: 'Name for the added model' }), {
      target: { value: 'my model' },
    });
    expect(screen.getByText(/Use letters/)).toBeTruthy();
    expect(add.disabled).toBe(true);
    await fireEvent.input(screen.getByRole('textbox', { name: 'Name for the added model' }), {
      target: { value: 'qwen-small' },
    });
    client.listModels.mockResolvedValue([smolModel(), qwen]);
    await fireEvent.click(add);
    await settle();
    expect(client.addModel).toHaveBeenCalledWith('/models/qwen.gguf', 'qwen-small');
    const status = screen.getByRole('status');
    expect(status.textContent).toMatch(/qwen2\.5-0\.5b-instruct-gguf.*is ready: qwen2, Q4_K_M, 32,768 tokens of context/);
    await fireEvent.click(screen.getByRole('button', { name: 'Chat with it' }));
    expect(onChat).toHaveBeenCalledWith('qwen2.5-0.5b-instruct-gguf');
  });

  it('shows the error of a path that is not a model', async () => {
    client.addModel.mockRejectedValue({ code: 'not_found', message: '/models/nothing.gguf: No such file or directory' });
    render(ModelsScreen, {});
    await settle();
    await fireEvent.input(screen.getByRole('textbox', { name: 'Model path' }), {
      target: { value: '/models/nothing.gguf' },
    });
    await fireEvent.click(screen.getByRole('button', { name: 'Add' }));
    await settle();
    expect(screen.getByText(/nothing\.gguf: No such file/)).toBeTruthy();
  });

  it('downloads from the hub with a progress bar and a stop button', async () => {
    let report: ((e: DownloadProgress) => void) | null = null;
    let finish: ((m: ModelEntry) => void) | null = null;
    client.pullModel.mockImplementation((_request, onProgress) => {
      report = onProgress;
      return new Promise((resolve) => (finish = resolve));
    });
    client.cancelPull.mockResolvedValue();
    render(ModelsScreen, {});
    await settle();
    const repo = screen.getByRole('textbox', { name: 'Repository' });
    await fireEvent.input(repo, { target: { value: 'SmolLM2' } });
    expect(screen.getByText(/owner\/name/)).toBeTruthy();
    expect((screen.getByRole('button', { name: 'Download' }) as HTMLButtonElement).disabled).toBe(true);

    await fireEvent.input(repo, { target: { value: 'https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF' } });
    await fireEvent.input(screen.getByRole('textbox', { name: 'GGUF file' }), {
      target: { value: 'qwen2.5-0.5b-instruct-q4_k_m.gguf' },
    });
    await fireEvent.click(screen.getByRole('button', { name: 'Download' }));
    await settle();
    expect(client.pullModel.mock.calls[0][0]).toEqual({
      repo: 'Qwen/Qwen2.5-0.5B-Instruct-GGUF',
      revision: undefined,
      file: 'qwen2.5-0.5b-instruct-q4_k_m.gguf',
      name: undefined,
    });
    report!({
      file: 'qwen2.5-0.5b-instruct-q4_k_m.gguf',
      file_index: 0,
      file_count: 1,
      downloaded_bytes: 100 * 1024 * 1024,
      total_bytes: 400 * 1024 * 1024,
    });
    await settle();
    expect(screen.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('25');
    expect(screen.getByText(/100\.0 MiB of 400\.0 MiB/)).toBeTruthy();

    await fireEvent.click(screen.getByRole('button', { name: 'Stop' }));
    expect(client.cancelPull).toHaveBeenCalledWith('Qwen/Qwen2.5-0.5B-Instruct-GGUF');
    expect(screen.getByText('Stopping…')).toBeTruthy();

    client.listModels.mockResolvedValue([smolModel(), qwen]);
    finish!(qwen);
    await settle();
    expect(screen.queryByRole('progressbar')).toBeNull();
    expect(screen.getByRole('status').textContent).toMatch(/is ready/);
  });

  it('explains a stopped download instead of failing silently', async () => {
    client.pullModel.mockRejectedValue({
      code: 'cancelled',
      message: 'm.gguf: stopped after 5242880 bytes; pull the same model again to resume',
    });
    render(ModelsScreen, {});
    await settle();
    await fireEvent.input(screen.getByRole('textbox', { name: 'Repository' }), { target: { value: 'a/b' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Download' }));
    await settle();
    expect(screen.getByText(/again to resume/)).toBeTruthy();
  });
});
