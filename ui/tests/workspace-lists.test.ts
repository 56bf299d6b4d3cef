// The lists the screens share: one read serves callers that arrive together, a caller arriving
// during a read gets a read made after it, a failed read keeps what was read before, and a
// model added on the Models screen reaches Chat's picker without Chat reading anything.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { ApiError } from '../src/bindings/ApiError';
import type { KnowledgeBaseInfo } from '../src/bindings/KnowledgeBaseInfo';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { PromptSummary } from '../src/bindings/PromptSummary';
import type { RunListItem } from '../src/bindings/RunListItem';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import { SharedList } from '../src/lib/workspace-lists.svelte';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';
import { embeddingModel, smolModel } from './helpers/reports';
import SharedListsHarness from './helpers/SharedListsHarness.svelte';

const client = vi.hoisted(() => ({
  backendAvailable: vi.fn(() => false),
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
  listKnowledgeBases: vi.fn<() => Promise<KnowledgeBaseInfo[]>>(),
  listPrompts: vi.fn<() => Promise<PromptSummary[]>>(),
  listRuns: vi.fn<() => Promise<RunListItem[]>>(),
  addModel: vi.fn<(path: string, name?: string) => Promise<ModelEntry>>(),
  removeModel: vi.fn(),
  pullModel: vi.fn(),
  cancelPull: vi.fn(),
}));

vi.mock('../src/lib/client', () => client);

beforeEach(() => {
  for (const f of Object.values(client)) f.mockReset();
  client.listKnowledgeBases.mockResolvedValue([]);
  client.listPrompts.mockResolvedValue([]);
  client.listRuns.mockResolvedValue([]);
});

/** A read that resolves when the test says. */
function pendingRead<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

describe('SharedList', () => {
  it('reads once more after a read that was under way, and shares that second read', async () => {
    const first = pendingRead<string[]>();
    const second = pendingRead<string[]>();
    const read = vi.fn().mockReturnValueOnce(first.promise).mockReturnValueOnce(second.promise);
    const list = new SharedList<string>(read);

    const a = list.refresh();
    const b = list.refresh();
    const c = list.refresh();
    expect(read).toHaveBeenCalledTimes(1);

    first.resolve(['before']);
    await expect(a).resolves.toEqual(['before']);
    expect(list.items).toEqual(['before']);

    // The read made for b and c starts only once the first has ended: it sees a change made meanwhile.
    await settle();
    expect(read).toHaveBeenCalledTimes(2);
    second.resolve(['before', 'after']);
    await expect(b).resolves.toEqual(['before', 'after']);
    await expect(c).resolves.toEqual(['before', 'after']);
    expect(list.items).toEqual(['before', 'after']);
  });

  it('keeps the last list when a read fails, and clears the error once one succeeds', async () => {
    const problem: ApiError = { code: 'io', message: 'models.json: permission denied' };
    const read = vi
      .fn<() => Promise<string[]>>()
      .mockResolvedValueOnce(['kept'])
      .mockRejectedValueOnce(problem)
      .mockResolvedValueOnce(['kept', 'new']);
    const list = new SharedList<string>(read);

    await list.refresh();
    await expect(list.refresh()).rejects.toEqual(problem);
    expect(list.items).toEqual(['kept']);
    expect(list.error).toEqual(problem);

    await list.refresh();
    expect(list.items).toEqual(['kept', 'new']);
    expect(list.error).toBeNull();
  });
});

describe('lists shared by the screens', () => {
  it('shows a model added on the Models screen in Chat at once', async () => {
    client.listModels.mockResolvedValue([embeddingModel()]);
    render(SharedListsHarness, { session: new ChatSession(new FakeChatTransport()) });
    await settle();
    expect(screen.getByText('No models in the cache')).toBeTruthy();
    const readsBefore = client.listModels.mock.calls.length;

    client.addModel.mockResolvedValue(smolModel());
    client.listModels.mockResolvedValue([smolModel(), embeddingModel()]);
    await fireEvent.input(screen.getByRole('textbox', { name: 'Model path' }), {
      target: { value: '/models/smollm2.gguf' },
    });
    await fireEvent.click(screen.getByRole('button', { name: 'Add' }));
    await settle();

    // One read, by the Models screen after its add; Chat shows it without reading.
    expect(client.listModels.mock.calls.length).toBe(readsBefore + 1);
    expect(screen.queryByText('No models in the cache')).toBeNull();
    const picker = screen.getByRole('combobox', { name: /model/i }) as HTMLSelectElement;
    expect(Array.from(picker.options).map((o) => o.value)).toContain(smolModel().name);
  });
});
