// Two chats answering the same message one after the other, and stopping a round.
import { describe, expect, it } from 'vitest';
import { ChatComparison } from '../src/lib/chat/chat-comparison.svelte';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import { oneAtATime } from '../src/lib/chat/chat-transport';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';

function pair() {
  const transport = new FakeChatTransport();
  const shared = oneAtATime(transport);
  const left = new ChatSession(shared);
  const right = new ChatSession(shared);
  left.model = 'smollm2-135m-instruct';
  right.model = 'tiny-chat';
  right.adapter = 'lora-1';
  return { transport, left, right, comparison: new ChatComparison(left, right) };
}

describe('ChatComparison', () => {
  it('asks the left configuration, then the right, the same message', async () => {
    const { transport, left, right, comparison } = pair();
    left.settings = { ...left.settings, temperature: 0, seed: 7 };
    const round = comparison.send('What is RAG?');
    expect(comparison.busy).toBe(true);
    expect(transport.generations).toHaveLength(1);
    expect(transport.current.request.model).toBe('smollm2-135m-instruct');
    transport.current.token('Retrieval.');
    transport.current.finish();
    await settle();
    expect(transport.generations).toHaveLength(2);
    expect(transport.current.request.model).toBe('tiny-chat');
    expect(transport.current.request.adapter).toBe('lora-1');
    expect(transport.current.request.params).toMatchObject({ temperature: 0, seed: 7 });
    expect(transport.current.request.messages.at(-1)).toEqual({ role: 'user', content: 'What is RAG?' });
    transport.current.token('Search, then answer.');
    transport.current.finish();
    await round;
    expect(left.turns.map((t) => t.content)).toEqual(['What is RAG?', 'Retrieval.']);
    expect(right.turns.map((t) => t.content)).toEqual(['What is RAG?', 'Search, then answer.']);
    expect(comparison.busy).toBe(false);
  });

  it('a stop ends the round: the right side does not start', async () => {
    const { transport, right, comparison } = pair();
    const round = comparison.send('Tell me a long story');
    transport.current.token('Once');
    await comparison.cancel();
    expect(transport.cancelCalls).toBe(1);
    transport.current.finish({ stop_reason: 'cancelled' });
    await round;
    expect(transport.generations).toHaveLength(1);
    expect(right.turns).toHaveLength(0);

    comparison.clear();
    expect(comparison.left.turns).toHaveLength(0);
  });
});
