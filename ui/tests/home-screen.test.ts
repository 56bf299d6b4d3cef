// The Home screen against a mocked backend: hardware cards, the model cache, and the quick chat
// streaming through a fake transport.
import { fireEvent, render, screen, within } from '@testing-library/svelte';
import { tick } from 'svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { AppInfo } from '../src/bindings/AppInfo';
import type { DefaultModelStatus } from '../src/bindings/DefaultModelStatus';
import type { HardwareReport } from '../src/bindings/HardwareReport';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { RunListItem } from '../src/bindings/RunListItem';
import type { Settings } from '../src/bindings/Settings';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import { buildGenerationParams, defaultChatSettings } from '../src/lib/chat/chat-settings';
import HomeScreen from '../src/screens/HomeScreen.svelte';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';
import { brokenModel, embeddingModel, gpuReport, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  hardwareReport: vi.fn<() => Promise<HardwareReport>>(),
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
  listRuns: vi.fn<() => Promise<RunListItem[]>>(),
  defaultModels: vi.fn<() => Promise<DefaultModelStatus[]>>(),
  settings: vi.fn<() => Promise<Settings>>(),
  saveSettings: vi.fn<(settings: Settings) => Promise<Settings>>(),
}));

vi.mock('../src/lib/client', () => ({
  hardwareReport: client.hardwareReport,
  listModels: client.listModels,
  listRuns: client.listRuns,
  defaultModels: client.defaultModels,
  settings: client.settings,
  saveSettings: client.saveSettings,
}));

const APP_INFO: AppInfo = {
  version: '0.1.0',
  workspace_dir: '/home/me/.tunelab',
  models_dir: '/home/me/.tunelab/models',
  default_model: 'smollm2-135m-instruct',
  cuda_build: false,
};

function otherChatModel(): ModelEntry {
  return { ...smolModel(), name: 'tinyllama-1.1b-chat', path: '/home/me/.tunelab/models/tinyllama.gguf' };
}

let transport: FakeChatTransport;
let session: ChatSession;

beforeEach(() => {
  client.hardwareReport.mockReset().mockResolvedValue(gpuReport());
  client.listModels.mockReset().mockResolvedValue([embeddingModel(), smolModel()]);
  client.listRuns.mockReset().mockResolvedValue([]);
  // The first-start offer has its own tests (default-models-offer.test.ts); here both are installed.
  client.defaultModels.mockReset().mockResolvedValue([]);
  client.settings.mockReset().mockResolvedValue({ device: 'auto' });
  client.saveSettings.mockReset().mockImplementation(async (settings) => settings);
  transport = new FakeChatTransport();
  session = new ChatSession(transport);
});

async function renderHome(props: { appInfo?: AppInfo | null; onOpenChat?: () => void } = {}) {
  const result = render(HomeScreen, { session, appInfo: APP_INFO, ...props });
  await settle();
  await tick();
  return { ...result, quickChat: within(screen.getByRole('region', { name: 'Quick chat' })) };
}

describe('HomeScreen', () => {
  it('shows the hardware, the model cache and a quick chat with the default model', async () => {
    const { quickChat } = await renderHome();

    expect(screen.getByText('NVIDIA GeForce RTX 4090')).toBeTruthy();
    expect(screen.getByText('AMD Ryzen 7 7700X')).toBeTruthy();
    expect(screen.getByText('Driver 550.54.14 · CUDA 12.4')).toBeTruthy();

    const cache = within(screen.getByRole('table', { name: 'Models in the cache' }));
    expect(cache.getByText('all-minilm-l6-v2')).toBeTruthy();
    expect(cache.getByText('embedding')).toBeTruthy();
    expect(cache.getByText('138.1 MiB')).toBeTruthy();

    expect(quickChat.getByText(/Answering with/).textContent).toMatch(
      /Answering with\s+smollm2-135m-instruct\s+·\s+default settings/,
    );
    expect(quickChat.getByText('Start a conversation')).toBeTruthy();
    const input = quickChat.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
    expect(input.disabled).toBe(false);
    expect(session.model).toBe('smollm2-135m-instruct');
  });

  it('saves the device setting, and a GPU card says whether it is used', async () => {
    const info = { ...APP_INFO, cuda_build: true };
    await renderHome({ appInfo: info });
    const picker = screen.getByRole('combobox', { name: 'Run on' }) as HTMLSelectElement;
    expect(picker.value).toBe('auto');
    const options = Array.from(picker.options).map((o) => o.textContent);
    expect(options).toEqual(['Auto (GPU 0)', 'CPU', 'GPU 0: NVIDIA GeForce RTX 4090']);
    expect(screen.getByText('Tunelab chats and trains on this GPU.')).toBeTruthy();

    await fireEvent.change(picker, { target: { value: 'cpu' } });
    await settle();
    expect(client.saveSettings).toHaveBeenCalledWith({ device: 'cpu' });
    expect(picker.value).toBe('cpu');
    expect(screen.getByText('Not used: the device setting says CPU.')).toBeTruthy();

    // Refused (say, the GPU cannot be opened): the reason shows and the choice goes back.
    client.saveSettings.mockRejectedValueOnce({ code: 'invalid_input', message: 'CUDA GPU 0 could not be opened' });
    await fireEvent.change(picker, { target: { value: 'cuda:0' } });
    await settle();
    expect(screen.getByRole('alert').textContent).toContain('CUDA GPU 0 could not be opened');
    expect(picker.value).toBe('cpu');
  });

  it('a build without CUDA offers auto (the CPU) and the CPU only', async () => {
    client.settings.mockResolvedValue({ device: 'cuda:1' });
    await renderHome();
    const picker = screen.getByRole('combobox', { name: 'Run on' }) as HTMLSelectElement;
    expect(Array.from(picker.options).map((o) => o.textContent)).toEqual(['Auto (CPU)', 'CPU', 'cuda:1 (not available)']);
    expect(picker.value).toBe('cuda:1');
  });

  it('streams an answer into the quick chat, with the default settings', async () => {
    const { quickChat } = await renderHome();
    const input = quickChat.getByRole('textbox', { name: 'Message' });

    await fireEvent.input(input, { target: { value: 'What is the capital of France?' } });
    await fireEvent.keyDown(input, { key: 'Enter' });

    expect(transport.generations).toHaveLength(1);
    expect(transport.current.request).toEqual({
      model: 'smollm2-135m-instruct',
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      params: buildGenerationParams(defaultChatSettings()),
    });
    expect(quickChat.getByText('What is the capital of France?')).toBeTruthy();
    expect(quickChat.getByLabelText('Reading the prompt')).toBeTruthy();

    transport.current.emit({ kind: 'prefill_done', prompt_tokens: 12 });
    transport.current.token('The capital');
    await tick();
    expect(quickChat.getByText('The capital')).toBeTruthy();
    expect(quickChat.getByRole('button', { name: /Stop/ })).toBeTruthy();

    transport.current.token(' is Paris.');
    await tick();
    expect(quickChat.getByText('The capital is Paris.')).toBeTruthy();

    transport.current.finish({ generated_tokens: 4 });
    await settle();
    expect(quickChat.getByText('4 tokens · prefill 250 tok/s · decode 40.0 tok/s · stopped: eos · on cpu')).toBeTruthy();
    expect(quickChat.queryByRole('button', { name: /Stop/ })).toBeNull();
    expect(quickChat.getByRole('button', { name: /Send/ })).toBeTruthy();
  });

  it('stops the answer with Escape or the Stop button', async () => {
    const { quickChat } = await renderHome();
    const input = quickChat.getByRole('textbox', { name: 'Message' });
    await fireEvent.input(input, { target: { value: 'Write a long story.' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    transport.current.token('Once upon a time');
    await tick();

    await fireEvent.keyDown(input, { key: 'Escape' });
    expect(transport.cancelCalls).toBe(1);

    transport.current.finish({ stop_reason: 'cancelled' });
    await settle();
    expect(session.busy).toBe(false);

    await fireEvent.input(input, { target: { value: 'Another one.' } });
    await fireEvent.keyDown(input, { key: 'Enter' });
    await fireEvent.click(quickChat.getByRole('button', { name: /Stop/ }));
    expect(transport.cancelCalls).toBe(2);
  });

  it("prefers app_info's default model, else the first usable chat model", async () => {
    client.listModels.mockResolvedValue([smolModel(), otherChatModel()]);
    await renderHome({ appInfo: { ...APP_INFO, default_model: 'tinyllama-1.1b-chat' } });
    expect(session.model).toBe('tinyllama-1.1b-chat');
  });

  it('falls back to the first chat model when the default cannot be used', async () => {
    client.listModels.mockResolvedValue([embeddingModel(), brokenModel(), otherChatModel()]);
    const { quickChat } = await renderHome({ appInfo: { ...APP_INFO, default_model: 'qwen2.5-0.5b-instruct' } });
    expect(session.model).toBe('tinyllama-1.1b-chat');
    expect(quickChat.getByText('tinyllama-1.1b-chat')).toBeTruthy();
  });

  it('tells the user how to get a model when none can chat', async () => {
    client.listModels.mockResolvedValue([embeddingModel(), brokenModel()]);
    const { quickChat } = await renderHome();

    expect(quickChat.getByText('No models in the cache')).toBeTruthy();
    expect(quickChat.getByText('tunelab models defaults')).toBeTruthy();
    expect(quickChat.getByText('tunelab models add PATH')).toBeTruthy();
    expect(quickChat.getByText('No chat model available')).toBeTruthy();
    const input = quickChat.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement;
    expect(input.disabled).toBe(true);
    expect(session.model).toBe('');
  });

  it('opens the full chat from the quick chat', async () => {
    const onOpenChat = vi.fn();
    const { quickChat } = await renderHome({ onOpenChat });
    await fireEvent.click(quickChat.getByRole('button', { name: /Open full chat/ }));
    expect(onOpenChat).toHaveBeenCalledOnce();
  });

  it('lists the three latest runs and leads to the Runs screen', async () => {
    const run = (id: string): RunListItem => ({
      id,
      method: 'qlora',
      model: 'smollm2-135m-instruct',
      status: 'completed',
      holder: null,
      error: null,
      can_resume: false,
      steps: 30,
      total_steps: 30,
      final_loss: 0.4,
      val_loss: 0.12,
      val_perplexity: 1.13,
      tokens_seen: 12000,
      peak_rss_bytes: 6e8,
      wall_time_s: 95,
      device: 'cpu',
      gpu: null,
      cpu_energy: null,
      started_at: 1,
      has_artifact: true,
      export_formats: ['gguf', 'merged', 'peft'],
    });
    client.listRuns.mockResolvedValue(['a', 'b', 'c', 'd'].map((id) => run(`qlora-${id}`)));
    const onOpenRuns = vi.fn();
    render(HomeScreen, { session, appInfo: APP_INFO, onOpenRuns });
    await settle();
    const card = screen.getByRole('region', { name: 'Recent runs' });
    expect(within(card).getAllByRole('listitem')).toHaveLength(3);
    expect(card.textContent).toContain('qlora · completed · loss 0.120');
    await fireEvent.click(within(card).getByRole('button', { name: 'All runs' }));
    expect(onOpenRuns).toHaveBeenCalled();
  });

  it('says how to start when there are no runs', async () => {
    render(HomeScreen, { session, appInfo: APP_INFO });
    await settle();
    expect(screen.getByText(/No training runs yet/)).toBeTruthy();
  });
});
