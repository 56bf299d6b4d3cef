// The chat logic with a fake transport: streaming, summaries, history, cancel and errors.
import { beforeEach, describe, expect, it } from 'vitest';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';

let transport: FakeChatTransport;
let session: ChatSession;

beforeEach(() => {
  transport = new FakeChatTransport();
  session = new ChatSession(transport);
  session.model = 'smollm2-135m-instruct';
});

describe('ChatSession', () => {
  it('appends streamed tokens to the answer and records the summary', async () => {
    const done = session.send('What is the capital of France?');
    expect(session.busy).toBe(true);
    expect(session.turns.map((turn) => turn.role)).toEqual(['user', 'assistant']);

    transport.current.emit({ kind: 'prefill_done', prompt_tokens: 12 });
    transport.current.token('The capital');
    expect(session.turns[1].content).toBe('The capital');
    transport.current.token(' is Paris.');
    expect(session.turns[1].content).toBe('The capital is Paris.');
    expect(session.turns[1].promptTokens).toBe(12);

    transport.current.finish({ generated_tokens: 6 });
    await done;

    expect(session.busy).toBe(false);
    expect(session.turns[1].status).toBe('done');
    expect(session.turns[1].summary?.generated_tokens).toBe(6);
    expect(session.error).toBeNull();
  });

  it('builds the request from the settings and the earlier exchanges', async () => {
    session.settings.systemPrompt = '  Be brief.  ';
    session.settings.temperature = 0.2;
    session.settings.seed = 7;
    const first = session.send('Hi');
    transport.current.token('Hello!');
    transport.current.finish();
    await first;

    void session.send('  How are you?\n');
    const { request } = transport.current;
    expect(request.model).toBe('smollm2-135m-instruct');
    expect(request.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'How are you?' },
    ]);
    expect(request.params).toMatchObject({ temperature: 0.2, top_p: 0.9, seed: 7, max_tokens: 512 });
  });

  it('ignores blank messages and messages sent while busy', async () => {
    await session.send('   ');
    expect(transport.generations).toHaveLength(0);

    void session.send('one');
    void session.send('two');
    expect(transport.generations).toHaveLength(1);
    expect(session.turns).toHaveLength(2);
  });

  it('asks for a model when none is selected', async () => {
    session.model = '';
    await session.send('Hi');
    expect(transport.generations).toHaveLength(0);
    expect(session.error?.code).toBe('no_model');
  });

  it('cancels through the transport and keeps the partial answer', async () => {
    const done = session.send('Tell me a long story');
    transport.current.token('Once upon');
    await session.cancel();
    expect(transport.cancelCalls).toBe(1);

    transport.current.finish({ stop_reason: 'cancelled', generated_tokens: 2 });
    await done;
    expect(session.turns[1]).toMatchObject({ status: 'cancelled', content: 'Once upon' });
    expect(session.error).toBeNull();
    expect(session.busy).toBe(false);
  });

  it('treats a rejection after a cancel as a stop, not an error', async () => {
    const done = session.send('Hi');
    await session.cancel();
    transport.current.fail({ code: 'cancelled', message: 'Generation cancelled' });
    await done;
    expect(session.error).toBeNull();
    expect(session.turns).toHaveLength(1);
  });

  it('shows backend errors and drops the empty answer', async () => {
    const done = session.send('Hi');
    transport.current.fail({ code: 'not_found', message: 'No model named smollm2' });
    await done;
    expect(session.error).toEqual({ code: 'not_found', message: 'No model named smollm2' });
    expect(session.turns.map((turn) => turn.role)).toEqual(['user']);
    expect(session.busy).toBe(false);

    // The failed question is not replayed as history.
    void session.send('Again');
    expect(transport.current.request.messages).toEqual([{ role: 'user', content: 'Again' }]);
    expect(session.error).toBeNull();
  });

  it('normalises string rejections and keeps partial text on a mid-stream error', async () => {
    const done = session.send('Hi');
    transport.current.token('Hel');
    transport.current.fail('device lost');
    await done;
    expect(session.error).toEqual({ code: 'internal', message: 'device lost' });
    expect(session.turns[1]).toMatchObject({ status: 'error', content: 'Hel' });
  });

  it('reports a failed cancel', async () => {
    transport.cancelError = { code: 'internal', message: 'cancel failed' };
    void session.send('Hi');
    await session.cancel();
    expect(session.error?.message).toBe('cancel failed');
  });

  it('clears the conversation and stops a running answer', async () => {
    const done = session.send('Hi');
    transport.current.token('Hel');
    session.clear();
    expect(session.turns).toEqual([]);
    expect(transport.cancelCalls).toBe(1);

    transport.current.token('lo');
    transport.current.finish({ stop_reason: 'cancelled' });
    await done;
    await settle();
    expect(session.turns).toEqual([]);
    expect(session.busy).toBe(false);
  });

  it('ignores tokens that arrive after the answer finished', async () => {
    const done = session.send('Hi');
    const late = transport.current;
    late.token('Paris');
    late.finish();
    await done;
    late.emit({ kind: 'token', text: ' (late)' });
    expect(session.turns[1].content).toBe('Paris');
  });
});
