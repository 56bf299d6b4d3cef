// The client against a mocked Tauri core: command names, argument shapes, error normalisation.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ChatEvent } from '../src/bindings/ChatEvent';
import type { ChatRequest } from '../src/bindings/ChatRequest';

const core = vi.hoisted(() => {
  class FakeChannel<T> {
    onmessage: (message: T) => void = () => {};
  }
  return { invoke: vi.fn(), inTauri: true, FakeChannel };
});

vi.mock('@tauri-apps/api/core', () => ({
  invoke: core.invoke,
  isTauri: () => core.inTauri,
  Channel: core.FakeChannel,
}));

const client = await import('../src/lib/client');

const request: ChatRequest = {
  model: 'smollm2-135m-instruct',
  messages: [{ role: 'user', content: 'Hi' }],
  params: { temperature: 0.7, top_k: null, top_p: 0.9, repetition_penalty: 1, seed: null, max_tokens: 64, stop: [] },
};

beforeEach(() => {
  core.invoke.mockReset();
  core.inTauri = true;
});

describe('client', () => {
  it('calls the commands by their Tauri names', async () => {
    core.invoke.mockResolvedValue('ok');
    await client.hardwareReport();
    await client.listModels();
    await client.appInfo();
    await client.cancelChat();
    await client.settings();
    await client.saveSettings({ device: 'cpu' });
    expect(core.invoke.mock.calls.map((call) => call[0])).toEqual([
      'hardware_report',
      'list_models',
      'app_info',
      'cancel_chat',
      'settings',
      'save_settings',
    ]);
    expect(core.invoke.mock.calls[5][1]).toEqual({ settings: { device: 'cpu' } });
  });

  it('sends the chat request with a channel named onEvent and forwards its events', async () => {
    const summary = { model: 'smollm2-135m-instruct', text: 'Hello', stop_reason: 'eos' };
    core.invoke.mockImplementation(async (_command: string, args: { onEvent: InstanceType<typeof core.FakeChannel> }) => {
      args.onEvent.onmessage({ kind: 'prefill_done', prompt_tokens: 7 });
      args.onEvent.onmessage({ kind: 'token', text: 'Hello' });
      return summary;
    });
    const events: ChatEvent[] = [];

    await expect(client.chat(request, (event) => events.push(event))).resolves.toBe(summary);

    const [command, args] = core.invoke.mock.calls[0];
    expect(command).toBe('chat');
    expect(args.request).toEqual(request);
    expect(args.onEvent).toBeInstanceOf(core.FakeChannel);
    expect(events).toEqual([
      { kind: 'prefill_done', prompt_tokens: 7 },
      { kind: 'token', text: 'Hello' },
    ]);
  });

  it('normalises rejections into ApiError', async () => {
    core.invoke.mockRejectedValueOnce('command list_models not allowed');
    await expect(client.listModels()).rejects.toEqual({ code: 'internal', message: 'command list_models not allowed' });

    core.invoke.mockRejectedValueOnce({ code: 'not_found', message: 'No such model' });
    await expect(client.chat(request, () => {})).rejects.toEqual({ code: 'not_found', message: 'No such model' });
  });

  it('reports a missing backend outside the desktop app', async () => {
    core.inTauri = false;
    await expect(client.hardwareReport()).rejects.toMatchObject({ code: 'no_backend' });
    await expect(client.chat(request, () => {})).rejects.toMatchObject({ code: 'no_backend' });
    expect(core.invoke).not.toHaveBeenCalled();
  });
});
