// The Chat screen's model picker against a mocked model list.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { KnowledgeBaseInfo } from '../src/bindings/KnowledgeBaseInfo';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { PromptSummary } from '../src/bindings/PromptSummary';
import type { RunListItem } from '../src/bindings/RunListItem';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import ChatScreen from '../src/screens/ChatScreen.svelte';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';
import { brokenModel, embeddingModel, runItem, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
  listKnowledgeBases: vi.fn<() => Promise<KnowledgeBaseInfo[]>>(),
  listPrompts: vi.fn<() => Promise<PromptSummary[]>>(),
  listRuns: vi.fn<() => Promise<RunListItem[]>>(),
}));

vi.mock('../src/lib/client', () => ({
  listModels: client.listModels,
  listKnowledgeBases: client.listKnowledgeBases,
  listPrompts: client.listPrompts,
  listRuns: client.listRuns,
}));

beforeEach(() => {
  client.listModels.mockReset();
  client.listKnowledgeBases.mockReset();
  client.listKnowledgeBases.mockResolvedValue([]);
  client.listPrompts.mockReset();
  client.listPrompts.mockResolvedValue([]);
  client.listRuns.mockReset();
  client.listRuns.mockResolvedValue([]);
});

function optionNames(): string[] {
  const picker = screen.getAllByRole('combobox')[0] as HTMLSelectElement;
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

  it('answers with a trained run chosen before the list arrived, until the base model is picked', async () => {
    client.listModels.mockResolvedValue([smolModel()]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    session.model = 'smollm2-135m-instruct';
    session.adapter = 'lora-smollm2-135m-instruct-1';
    render(ChatScreen, { session });
    await settle();

    const picker = screen.getAllByRole('combobox')[0] as HTMLSelectElement;
    expect(picker.value).toBe('smollm2-135m-instruct');
    const runPicker = screen.getByRole('combobox', { name: 'Answer with trained run' }) as HTMLSelectElement;
    expect(runPicker.value).toBe('lora-smollm2-135m-instruct-1');
    void session.send('One pizza please');
    expect(transport.current.request.adapter).toBe('lora-smollm2-135m-instruct-1');
    transport.current.finish();
    await settle();

    await fireEvent.change(runPicker, { target: { value: '' } });
    expect(session.adapter).toBeNull();
    void session.send('And again');
    expect(transport.current.request.adapter).toBeUndefined();
  });

  it('lists the runs with a result and answers with the one picked', async () => {
    client.listModels.mockResolvedValue([smolModel(), { ...smolModel(), name: 'tiny-chat' }]);
    client.listRuns.mockResolvedValue([
      { ...runItem('qlora-smollm2-1'), model: 'smollm2-135m-instruct' },
      runItem('qlora-stopped', 'cancelled'),
      { ...runItem('full-tiny-2'), method: 'full', model: 'tiny-chat' },
    ]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    session.model = 'tiny-chat';
    render(ChatScreen, { session });
    await settle();

    const runPicker = screen.getByRole('combobox', { name: 'Answer with trained run' }) as HTMLSelectElement;
    expect(Array.from(runPicker.options).map((o) => o.textContent)).toEqual([
      'No trained run',
      'qlora-smollm2-1',
      'full-tiny-2 (its own model)',
    ]);
    // An adapter answers on the model it was trained on.
    await fireEvent.change(runPicker, { target: { value: 'qlora-smollm2-1' } });
    expect([session.model, session.adapter]).toEqual(['smollm2-135m-instruct', 'qlora-smollm2-1']);
    // A fully fine-tuned model answers in the base's place; the model picker stays as it was.
    await fireEvent.change(runPicker, { target: { value: 'full-tiny-2' } });
    expect([session.model, session.adapter]).toEqual(['smollm2-135m-instruct', 'full-tiny-2']);
    void session.send('Hello');
    expect(transport.current.request.adapter).toBe('full-tiny-2');
  });

  it('answers from a chosen knowledge base and lists the sources it cites', async () => {
    client.listModels.mockResolvedValue([smolModel()]);
    client.listKnowledgeBases.mockResolvedValue([
      {
        name: 'brightloom',
        embedder: 'all-minilm-l6-v2',
        dimension: 384,
        chunking: { size: 200, overlap: 40 },
        created_unix: 0,
        chunks: 59,
        documents: 11,
        vector_index: false,
      },
    ]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    render(ChatScreen, { session });
    await settle();

    const kbPicker = screen.getByRole('combobox', { name: 'Answer from knowledge base' }) as HTMLSelectElement;
    expect(Array.from(kbPicker.options).map((o) => o.textContent)).toEqual([
      'No knowledge base',
      'brightloom (11 documents)',
    ]);
    await fireEvent.change(kbPicker, { target: { value: 'brightloom' } });
    expect(session.kb).toBe('brightloom');

    void session.send('How many holiday days do employees get?');
    expect(transport.current.request.kb).toBe('brightloom');
    transport.current.token('28 days a year [1].');
    transport.current.finish({
      grounded: true,
      citations: [
        {
          number: 1,
          source: '/docs/handbook.md',
          title: 'Brightloom Employee Handbook',
          location: 'Time off › Holidays, line 31',
          score: 0.033,
          similarity: 0.62,
          text: 'Everyone gets 28 days of paid holiday per year plus public holidays.',
        },
      ],
    });
    await settle();

    const sources = screen.getByRole('list', { name: 'Sources' });
    expect(sources.textContent).toContain('Brightloom Employee Handbook');
    expect(sources.textContent).toContain('Time off › Holidays, line 31');
    expect(sources.textContent).toContain('/docs/handbook.md');
    // A citation opens the passage the answer drew on.
    expect(sources.textContent).not.toContain('Everyone gets 28 days');
    const cite = screen.getByRole('button', { name: /\[1\] Brightloom Employee Handbook/ });
    await fireEvent.click(cite);
    expect(cite.getAttribute('aria-expanded')).toBe('true');
    expect(sources.textContent).toContain('Everyone gets 28 days of paid holiday');
    await fireEvent.click(cite);
    expect(sources.textContent).not.toContain('Everyone gets 28 days');
  });

  it('frames messages with a saved prompt template when one is chosen', async () => {
    client.listModels.mockResolvedValue([smolModel()]);
    client.listPrompts.mockResolvedValue([
      {
        name: 'support',
        versions: [
          { version: 1, saved_unix: 0, note: '' },
          { version: 2, saved_unix: 0, note: 'politer' },
        ],
      },
    ]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    render(ChatScreen, { session });
    await settle();

    const picker = screen.getByRole('combobox', { name: 'Prompt template' }) as HTMLSelectElement;
    expect(Array.from(picker.options).map((o) => o.textContent)).toEqual(['No template', 'support (v2)']);
    await fireEvent.change(picker, { target: { value: 'support' } });
    void session.send('Where is my order?');
    expect(transport.current.request.template).toEqual({ name: 'support' });
    transport.current.finish();
    await settle();

    await fireEvent.change(picker, { target: { value: '' } });
    expect(session.template).toBeNull();
    void session.send('And now?');
    expect(transport.current.request.template).toBeUndefined();
  });

  it('hides the template picker when nothing is saved', async () => {
    client.listModels.mockResolvedValue([smolModel()]);
    render(ChatScreen, { session: new ChatSession(new FakeChatTransport()) });
    await settle();
    expect(screen.queryByRole('combobox', { name: 'Prompt template' })).toBeNull();
  });

  it('compares two configurations side by side on the same message', async () => {
    client.listModels.mockResolvedValue([smolModel(), { ...smolModel(), name: 'tiny-chat' }]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    const compareSession = new ChatSession(transport);
    render(ChatScreen, { session, compareSession });
    await settle();

    expect(screen.queryByRole('region', { name: 'Right side' })).toBeNull();
    await fireEvent.click(screen.getByRole('button', { name: /Compare/ }));
    expect(screen.getByRole('region', { name: 'Right side' })).toBeTruthy();
    const models = screen.getAllByRole('combobox') as HTMLSelectElement[];
    expect(models).toHaveLength(2);
    await fireEvent.change(models[1], { target: { value: 'tiny-chat' } });
    expect(compareSession.model).toBe('tiny-chat');

    await fireEvent.input(screen.getByRole('textbox', { name: 'Message' }), { target: { value: 'Hello there' } });
    await fireEvent.click(screen.getByTitle('Send (Enter)'));
    expect(transport.current.request.model).toBe('smollm2-135m-instruct');
    transport.current.token('Hi from the left.');
    transport.current.finish();
    await settle();
    expect(transport.current.request.model).toBe('tiny-chat');
    transport.current.token('Hi from the right.');
    transport.current.finish();
    await settle();
    expect(screen.getByText('Hi from the left.')).toBeTruthy();
    expect(screen.getByText('Hi from the right.')).toBeTruthy();
    expect(compareSession.turns).toHaveLength(2);
  });

  it('compares a trained run with its base model', async () => {
    client.listModels.mockResolvedValue([smolModel()]);
    client.listRuns.mockResolvedValue([runItem('qlora-smollm2-1')]);
    const transport = new FakeChatTransport();
    const session = new ChatSession(transport);
    const compareSession = new ChatSession(transport);
    render(ChatScreen, { session, compareSession });
    await settle();

    await fireEvent.click(screen.getByRole('button', { name: /Compare/ }));
    const right = screen.getByRole('combobox', { name: 'Answer with trained run (right)' });
    await fireEvent.change(right, { target: { value: 'qlora-smollm2-1' } });
    await fireEvent.input(screen.getByRole('textbox', { name: 'Message' }), { target: { value: 'Hi' } });
    await fireEvent.click(screen.getByTitle('Send (Enter)'));
    expect(transport.current.request.adapter).toBeUndefined();
    transport.current.finish();
    await settle();
    expect(transport.current.request.adapter).toBe('qlora-smollm2-1');
    expect(transport.current.request.model).toBe('smollm2-135m-instruct');
  });
});
