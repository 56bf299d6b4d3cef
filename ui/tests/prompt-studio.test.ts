// The prompt studio against a mocked backend: variables appear as they are typed, the template
// renders through the model (debounced) with its token count, a run streams its answer, and
// saving makes versions that can be reopened.
import { fireEvent, render, screen } from '@testing-library/svelte';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ModelEntry } from '../src/bindings/ModelEntry';
import type { PromptSummary } from '../src/bindings/PromptSummary';
import type { PromptTemplate } from '../src/bindings/PromptTemplate';
import type { RenderedPrompt } from '../src/bindings/RenderedPrompt';
import type { SavedPrompt } from '../src/bindings/SavedPrompt';
import PromptStudioScreen from '../src/screens/PromptStudioScreen.svelte';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';
import { smolModel } from './helpers/reports';

const client = vi.hoisted(() => ({
  listModels: vi.fn<() => Promise<ModelEntry[]>>(),
  listPrompts: vi.fn<() => Promise<PromptSummary[]>>(),
  loadPrompt: vi.fn<(name: string, version?: number) => Promise<SavedPrompt>>(),
  renderPrompt: vi.fn<(model: string, template: PromptTemplate) => Promise<RenderedPrompt>>(),
  savePrompt: vi.fn<(name: string, note: string, template: PromptTemplate) => Promise<SavedPrompt>>(),
}));

vi.mock('../src/lib/client', () => client);

/** What the backend would render: ChatML, as SmolLM2's template writes it. */
function fakeRender(_model: string, template: PromptTemplate): Promise<RenderedPrompt> {
  const value = (name: string) => template.variables.find((v) => v.name === name)?.value ?? '';
  const fill = (text: string) => text.replace(/\{\{\s*([\w-]+)\s*\}\}/g, (_, n: string) => value(n));
  const messages = [
    ...(template.system ? [{ role: 'system' as const, content: fill(template.system) }] : []),
    ...template.examples.flatMap((e) => [
      { role: 'user' as const, content: fill(e.user) },
      { role: 'assistant' as const, content: fill(e.assistant) },
    ]),
    { role: 'user' as const, content: fill(template.user) },
  ];
  const text =
    messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '<|im_start|>assistant\n';
  return Promise.resolve({ messages, text, tokens: text.split(/\s+/).length, context_length: 8192, unused: [] });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeEach(() => {
  for (const f of Object.values(client)) f.mockReset();
  client.listModels.mockResolvedValue([smolModel()]);
  client.listPrompts.mockResolvedValue([]);
  client.renderPrompt.mockImplementation(fakeRender);
});

afterEach(() => vi.useRealTimers());

describe('PromptStudioScreen', () => {
  it('lists the variables the texts use and renders the template through the model', async () => {
    render(PromptStudioScreen, { transport: new FakeChatTransport() });
    await settle();
    // The starter template uses {{style}} and {{input}}.
    expect(screen.getByRole('textbox', { name: 'Test value for style' })).toBeTruthy();
    expect(screen.getByRole('textbox', { name: 'Test value for input' })).toBeTruthy();

    await fireEvent.input(screen.getByRole('textbox', { name: 'System text' }), {
      target: { value: 'You answer for {{company}}.' },
    });
    expect(screen.queryByRole('textbox', { name: 'Test value for style' })).toBeNull();
    await fireEvent.input(screen.getByRole('textbox', { name: 'Test value for company' }), {
      target: { value: 'Brightloom' },
    });
    await pause(300);
    await settle();
    const last = client.renderPrompt.mock.calls.at(-1)!;
    expect(last[0]).toBe('smollm2-135m-instruct');
    expect(last[1].variables).toEqual([
      { name: 'company', value: 'Brightloom' },
      { name: 'input', value: 'What is a LoRA adapter?' },
    ]);
    const rendered = screen.getByLabelText('Rendered prompt');
    expect(rendered.textContent).toContain('<|im_start|>system\nYou answer for Brightloom.<|im_end|>');
    expect(screen.getByText(/tokens · 1% of 8,192/)).toBeTruthy();
    // Typing quickly renders once, after the pause.
    expect(client.renderPrompt.mock.calls.length).toBeLessThanOrEqual(2);
  });

  it('adds few-shot examples as earlier turns and shows a render error with its field', async () => {
    render(PromptStudioScreen, { transport: new FakeChatTransport() });
    await settle();
    await fireEvent.click(screen.getByRole('button', { name: 'Add example' }));
    await fireEvent.input(screen.getByRole('textbox', { name: 'Example 1 user' }), { target: { value: 'What is RAG?' } });
    await fireEvent.input(screen.getByRole('textbox', { name: 'Example 1 answer' }), {
      target: { value: 'Answers from your documents.' },
    });
    await pause(300);
    await settle();
    expect(client.renderPrompt.mock.calls.at(-1)![1].examples).toEqual([
      { user: 'What is RAG?', assistant: 'Answers from your documents.' },
    ]);
    await fireEvent.click(screen.getByRole('button', { name: 'Remove example 1' }));
    expect(screen.queryByRole('textbox', { name: 'Example 1 user' })).toBeNull();

    client.renderPrompt.mockRejectedValue({ code: 'invalid_input', message: 'user, line 1: `{{input` is not closed' });
    await fireEvent.input(screen.getByRole('textbox', { name: 'User message' }), { target: { value: '{{input' } });
    await pause(300);
    await settle();
    expect(screen.getByRole('alert').textContent).toMatch(/user, line 1/);
    expect((screen.getByRole('button', { name: 'Run' }) as HTMLButtonElement).disabled).toBe(true);
  });

  it('runs the rendered conversation and streams the answer', async () => {
    const transport = new FakeChatTransport();
    render(PromptStudioScreen, { transport });
    await pause(300);
    await settle();
    await fireEvent.click(screen.getByRole('button', { name: 'Run' }));
    expect(transport.current.request.messages.at(-1)).toEqual({ role: 'user', content: 'What is a LoRA adapter?' });
    expect(transport.current.request.messages[0].content).toBe('You are a helpful assistant. Answer in two short sentences.');
    transport.current.token('A small set of ');
    await settle();
    expect(screen.getByLabelText('Answer').textContent).toContain('A small set of');
    await fireEvent.click(screen.getByRole('button', { name: 'Stop' }));
    expect(transport.cancelCalls).toBe(1);
    transport.current.token('weights.');
    transport.current.finish();
    await settle();
    expect(screen.getByLabelText('Answer').textContent).toBe('A small set of weights.');
  });

  it('saves versions under a name and reopens an earlier one', async () => {
    const onUseInChat = vi.fn();
    render(PromptStudioScreen, { transport: new FakeChatTransport(), onUseInChat });
    await settle();
    const save = screen.getByRole('button', { name: 'Save version' }) as HTMLButtonElement;
    expect(save.disabled).toBe(true);
    await fireEvent.input(screen.getByRole('textbox', { name: 'Template name' }), { target: { value: 'explainer' } });
    await fireEvent.input(screen.getByRole('textbox', { name: 'Version note' }), { target: { value: 'first' } });
    client.savePrompt.mockImplementation((name, note, template) =>
      Promise.resolve({ name, version: 1, saved_unix: 0, note, template }),
    );
    client.listPrompts.mockResolvedValue([{ name: 'explainer', versions: [{ version: 1, saved_unix: 0, note: 'first' }] }]);
    await fireEvent.click(save);
    await settle();
    expect(client.savePrompt.mock.calls[0][0]).toBe('explainer');
    expect(client.savePrompt.mock.calls[0][1]).toBe('first');
    expect(screen.getByRole('status').textContent).toBe('Saved explainer v1.');

    await fireEvent.click(screen.getByRole('button', { name: 'Use in chat' }));
    expect(onUseInChat).toHaveBeenCalledWith('explainer', 'smollm2-135m-instruct');

    client.loadPrompt.mockResolvedValue({
      name: 'explainer',
      version: 1,
      saved_unix: 0,
      note: 'first',
      template: { system: 'Old system {{x}}', user: '{{input}}', variables: [{ name: 'x', value: '42' }], examples: [] },
    });
    await fireEvent.change(screen.getByRole('combobox', { name: 'Version' }), { target: { value: '1' } });
    await settle();
    expect(client.loadPrompt).toHaveBeenCalledWith('explainer', 1);
    expect((screen.getByRole('textbox', { name: 'System text' }) as HTMLTextAreaElement).value).toBe('Old system {{x}}');
    expect((screen.getByRole('textbox', { name: 'Test value for x' }) as HTMLInputElement).value).toBe('42');
  });
});
