// Two chat sessions sharing one transport (Home's quick chat and the Chat screen) take turns.
import { describe, expect, it } from 'vitest';
import { ChatSession } from '../src/lib/chat/chat-session.svelte';
import { CHAT_BUSY_ERROR, oneAtATime } from '../src/lib/chat/chat-transport';
import { FakeChatTransport, settle } from './helpers/fake-chat-transport';

function sessions() {
  const fake = new FakeChatTransport();
  const shared = oneAtATime(fake);
  const quick = new ChatSession(shared);
  const full = new ChatSession(shared);
  quick.model = 'smollm2-135m-instruct';
  full.model = 'smollm2-135m-instruct';
  return { fake, quick, full };
}

describe('oneAtATime', () => {
  it('refuses a second answer while the first is generating, then allows it', async () => {
    const { fake, quick, full } = sessions();
    const first = quick.send('Hello');
    await full.send('Hi there');

    expect(fake.generations).toHaveLength(1);
    expect(full.error).toEqual(CHAT_BUSY_ERROR);
    expect(full.busy).toBe(false);
    expect(quick.busy).toBe(true);

    fake.current.token('Hi!');
    fake.current.finish();
    await first;

    full.dismissError();
    const second = full.send('Hi there');
    expect(fake.generations).toHaveLength(2);
    fake.current.finish();
    await second;
    expect(full.error).toBeNull();
    expect(full.turns.at(-1)?.status).toBe('done');
  });

  it('frees the transport when a generation fails or is stopped', async () => {
    const { fake, quick, full } = sessions();
    const failed = quick.send('Hello');
    fake.current.fail({ code: 'bad_model', message: 'boom' });
    await failed;

    const stopped = full.send('Hi');
    await full.cancel();
    expect(fake.cancelCalls).toBe(1);
    fake.current.finish({ stop_reason: 'cancelled' });
    await stopped;
    await settle();

    const again = quick.send('Hello again');
    expect(fake.generations).toHaveLength(3);
    fake.current.finish();
    await again;
    expect(quick.turns.at(-1)?.status).toBe('done');
  });
});
