// The Knowledge screen against a mocked backend: the empty state, creating a knowledge base,
// adding documents with progress and a report, the document list and search.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { AddProgress } from '../src/bindings/AddProgress';
import type { AddReport } from '../src/bindings/AddReport';
import type { CreateKnowledgeBase } from '../src/bindings/CreateKnowledgeBase';
import type { Hit } from '../src/bindings/Hit';
import type { KnowledgeBaseDetail } from '../src/bindings/KnowledgeBaseDetail';
import type { KnowledgeBaseInfo } from '../src/bindings/KnowledgeBaseInfo';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { SearchRequest } from '../src/bindings/SearchRequest';
import KnowledgeScreen from '../src/screens/KnowledgeScreen.svelte';
import { settle } from './helpers/fake-chat-transport';
import { embeddingModel, smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  backendAvailable: vi.fn(() => false),
  listKnowledgeBases: vi.fn<() => Promise<KnowledgeBaseInfo[]>>(),
  knowledgeBase: vi.fn<(name: string) => Promise<KnowledgeBaseDetail>>(),
  createKnowledgeBase: vi.fn<(request: CreateKnowledgeBase) => Promise<KnowledgeBaseInfo>>(),
  addToKnowledgeBase:
    vi.fn<(name: string, paths: string[], onProgress: (e: AddProgress) => void) => Promise<AddReport>>(),
  cancelKnowledgeAdd: vi.fn<(name: string) => Promise<void>>(),
  removeKnowledgeBase: vi.fn<(name: string) => Promise<void>>(),
  removeKnowledgeSource: vi.fn<(name: string, source: string) => Promise<number>>(),
  searchKnowledgeBase: vi.fn<(request: SearchRequest) => Promise<Hit[]>>(),
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
}));

vi.mock('../src/lib/client', () => client);

function info(name: string, documents = 0, chunks = 0): KnowledgeBaseInfo {
  return {
    name,
    embedder: 'all-minilm-l6-v2',
    dimension: 384,
    chunking: { size: 200, overlap: 40 },
    created_unix: 0,
    chunks,
    documents,
    vector_index: false,
  };
}

const handbook = {
  source: '/docs/handbook.md',
  title: 'Brightloom Employee Handbook',
  format: 'markdown',
  hash: 'ab'.repeat(32),
  chunks: 9,
  tokens: 485,
  added_unix: 0,
};

beforeEach(() => {
  for (const f of Object.values(client)) f.mockReset();
  client.backendAvailable.mockReturnValue(false);
  client.listModels.mockResolvedValue([smolModel(), embeddingModel()]);
});

describe('KnowledgeScreen', () => {
  it('creates a knowledge base with the embedder and the default chunking', async () => {
    client.listKnowledgeBases.mockResolvedValueOnce([]).mockResolvedValue([info('team-docs')]);
    client.createKnowledgeBase.mockResolvedValue(info('team-docs'));
    client.knowledgeBase.mockResolvedValue({ info: info('team-docs'), sources: [] });
    render(KnowledgeScreen, {});
    await settle();
    expect(screen.getByText(/No knowledge bases yet/)).toBeTruthy();

    await fireEvent.click(screen.getAllByRole('button', { name: 'New knowledge base' })[0]);
    const name = screen.getByRole('textbox', { name: 'Name' });
    await fireEvent.input(name, { target: { value: 'has space' } });
    expect(screen.getByText(/Use letters, digits/)).toBeTruthy();
    expect((screen.getByRole('button', { name: 'Create' }) as HTMLButtonElement).disabled).toBe(true);

    await fireEvent.input(name, { target: { value: 'team-docs' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Create' }));
    await settle();
    expect(client.createKnowledgeBase).toHaveBeenCalledWith({
      name: 'team-docs',
      embedder: embeddingModel().name,
      chunking: { size: 200, overlap: 40 },
    });
    expect(screen.getByRole('heading', { name: 'team-docs' })).toBeTruthy();
  });

  it('adds pasted paths with progress, then shows the report and the documents', async () => {
    client.listKnowledgeBases.mockResolvedValue([info('brightloom')]);
    client.knowledgeBase
      .mockResolvedValueOnce({ info: info('brightloom'), sources: [] })
      .mockResolvedValue({ info: info('brightloom', 1, 9), sources: [handbook] });
    let finish: (report: AddReport) => void = () => {};
    client.addToKnowledgeBase.mockImplementation((_name, _paths, onProgress) => {
      onProgress({ stage: 'embedding', done: 4, total: 9 });
      return new Promise((resolve) => (finish = resolve));
    });
    render(KnowledgeScreen, {});
    await settle();

    await fireEvent.input(screen.getByRole('textbox', { name: 'Paths to add' }), {
      target: { value: '/docs/handbook.md\n/docs/broken.pdf' },
    });
    await fireEvent.click(screen.getByRole('button', { name: 'Add' }));
    expect(client.addToKnowledgeBase.mock.calls[0][1]).toEqual(['/docs/handbook.md', '/docs/broken.pdf']);
    expect(screen.getByText('Embedding chunk 4 of 9')).toBeTruthy();
    expect(screen.getByRole('progressbar').getAttribute('aria-valuenow')).toBe('48');

    finish({
      added: ['/docs/handbook.md'],
      replaced: [],
      unchanged: [],
      failed: [{ path: '/docs/broken.pdf', error: '/docs/broken.pdf is not a readable pdf file: no pages' }],
      chunks_added: 9,
      chunks_removed: 0,
      seconds: 0.8,
      embed_seconds: 0.5,
    });
    await settle();
    await settle();
    expect(screen.getByText('1 added, 1 failed · 9 chunks in 0.8 s')).toBeTruthy();
    expect(screen.getByText(/broken.pdf is not a readable pdf file/)).toBeTruthy();
    const table = screen.getByRole('table', { name: 'Documents' });
    expect(table.textContent).toContain('Brightloom Employee Handbook');
    expect(table.textContent).toContain('markdown');
  });

  it('stops an add: the backend undoes it, and the list stays as it was', async () => {
    client.listKnowledgeBases.mockResolvedValue([info('brightloom', 1, 9)]);
    client.knowledgeBase.mockResolvedValue({ info: info('brightloom', 1, 9), sources: [handbook] });
    let refuse: (error: unknown) => void = () => {};
    client.addToKnowledgeBase.mockImplementation((_name, _paths, onProgress) => {
      onProgress({ stage: 'embedding', done: 100, total: 900 });
      return new Promise((_resolve, reject) => (refuse = reject));
    });
    client.cancelKnowledgeAdd.mockResolvedValue();
    render(KnowledgeScreen, {});
    await settle();
    await fireEvent.input(screen.getByRole('textbox', { name: 'Paths to add' }), { target: { value: '/docs/wiki' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Add' }));
    await fireEvent.click(screen.getByRole('button', { name: 'Stop' }));
    expect(client.cancelKnowledgeAdd).toHaveBeenCalledWith('brightloom');
    expect(screen.getByText(/Stopping… what was added so far is taken back/)).toBeTruthy();

    refuse({ code: 'cancelled', message: 'adding to knowledge base `brightloom` was stopped; it holds what it held before' });
    await settle();
    await settle();
    expect(screen.getByText(/was stopped; it holds what it held before/)).toBeTruthy();
    expect(screen.queryByRole('alert')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Stop' })).toBeNull();
    expect(screen.getByRole('table', { name: 'Documents' }).textContent).toContain('Brightloom Employee Handbook');
  });

  it('keeps the error of an add in view after the list refreshes', async () => {
    client.listKnowledgeBases.mockResolvedValue([info('brightloom')]);
    client.knowledgeBase.mockResolvedValue({ info: info('brightloom'), sources: [] });
    client.addToKnowledgeBase.mockRejectedValue({ code: 'busy', message: 'brightloom is in use by tunelab (pid 7), knowledge base for 3 s' });
    render(KnowledgeScreen, {});
    await settle();
    await fireEvent.input(screen.getByRole('textbox', { name: 'Paths to add' }), { target: { value: '/docs/a.md' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Add' }));
    await settle();
    await settle();
    expect(screen.getByText(/is in use by tunelab \(pid 7\)/)).toBeTruthy();
  });

  it('searches in the chosen mode and shows where each hit is', async () => {
    client.listKnowledgeBases.mockResolvedValue([info('brightloom', 1, 9)]);
    client.knowledgeBase.mockResolvedValue({ info: info('brightloom', 1, 9), sources: [handbook] });
    client.searchKnowledgeBase.mockResolvedValue([
      {
        source: '/docs/handbook.md',
        title: 'Brightloom Employee Handbook',
        location: { section: 'Time off › Holidays', line: 31 },
        label: 'Time off › Holidays, line 31',
        text: 'Everyone gets 28 days of paid holiday per year plus public holidays.',
        score: 0.033,
        similarity: 0.62,
        chunk_id: 'a-b-3',
      },
    ]);
    const onAsk = vi.fn();
    render(KnowledgeScreen, { onAsk });
    await settle();

    await fireEvent.input(screen.getByRole('searchbox', { name: 'Search query' }), {
      target: { value: 'holiday days' },
    });
    await fireEvent.change(screen.getByRole('combobox', { name: 'Search mode' }), { target: { value: 'text' } });
    await fireEvent.click(screen.getByRole('button', { name: 'Search' }));
    await settle();
    expect(client.searchKnowledgeBase).toHaveBeenCalledWith({
      kb: 'brightloom',
      query: 'holiday days',
      options: { mode: 'text', k: 5, source: null },
    });
    const results = screen.getByRole('list', { name: 'Search results' });
    expect(results.textContent).toContain('Time off › Holidays, line 31');
    expect(results.textContent).toContain('28 days');
    // The query's words are marked in the hit.
    expect(Array.from(results.querySelectorAll('mark')).map((m) => m.textContent)).toEqual([
      'days',
      'holiday',
      'holidays',
    ]);

    await fireEvent.click(screen.getByRole('button', { name: 'Ask in chat' }));
    expect(onAsk).toHaveBeenCalledWith('brightloom');
  });
});
