// The Chat screen's model picker against a mocked model list.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import ChatScreen from '../src/screens/ChatScreen.svelte';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';
import { brokenModel, embeddingModel, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({ listModels: vi.fn<() => Promise<ModelEntry[]>>() }));

vi.mock('../src/lib/client', () => ({ listModels: client.listModels }));

beforeEach(() => {
  client.listModels.mockReset();
});

function optionNames(): string[] {
  const picker = screen.getByRole('combobox') as HTMLSelectElement;
  return Array.from(picker.options).map((option) => option.textContent ?? '');
}

describe('ChatScreen', () => {
  it('offers only chat models whose files can be read', async () => {
    client.listModels.mockResolvedValue([embeddingModel(), brokenModel(), smolModel()]);
    const session = new ChatSession(new FakeChatTransport());
    render(ChatScreen, { session });
    await settle();

    expect(optionNames()).toEqual(['smollm2-135m-instruct']);
    expect(session.model).toBe('smollm2-135m-instruct');
    expect(screen.queryByText('No models in the cache')).toBeNull();
  });

  it('shows the empty state when no model can chat', async () => {
    client.listModels.mockResolvedValue([embeddingModel(), brokenModel()]);
    const session = new ChatSession(new FakeChatTransport());
    session.model = 'qwen2.5-0.5b-instruct';
    render(ChatScreen, { session, appInfo: null });
    await settle();

    expect(optionNames()).toEqual(['No models']);
    expect(session.model).toBe('');
    expect(screen.getByText('No models in the cache')).toBeTruthy();
  });

  it('answers with a trained run chosen before the list arrived, until the chip is removed', async () => {
    client.listModels.mockResolvedValue([smolModel()]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    session.model = 'smollm2-135m-instruct';
    session.adapter = 'lora-smollm2-135m-instruct-1';
    render(ChatScreen, { session });
    await settle();

    const picker = screen.getByRole('combobox') as HTMLSelectElement;
    expect(picker.value).toBe('smollm2-135m-instruct');
    expect(screen.getByText(/with lora-smollm2-135m-instruct-1/)).toBeTruthy();
    void session.send('One pizza please');
    expect(transport.current.request.adapter).toBe('lora-smollm2-135m-instruct-1');
    transport.current.finish();
    await settle();

    await fireEvent.click(screen.getByRole('button', { name: 'Answer with the base model' }));
    expect(session.adapter).toBeNull();
    expect(screen.queryByText(/with lora-/)).toBeNull();
  });
});
