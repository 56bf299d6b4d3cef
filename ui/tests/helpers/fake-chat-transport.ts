// A ChatTransport whose generations the test drives by hand: emit tokens, then finish or fail.
import type { ChatEvent } from '../../src/bindings/ChatEvent';
import type { ChatRequest } from '../../src/bindings/ChatRequest';
import type { ChatSummary } from '../../src/bindings/ChatSummary';
import type { ChatTransport } from '../../src/lib/chat/chat-transport';

export interface PendingGeneration {
  request: ChatRequest;
  emit(event: ChatEvent): void;
  token(text: string): void;
  finish(summary?: Partial<ChatSummary>): void;
  fail(reason: unknown): void;
}

export class FakeChatTransport implements ChatTransport {
  generations: PendingGeneration[] = [];
  cancelCalls = 0;
  cancelError: unknown = null;

  get current(): PendingGeneration {
    const generation = this.generations.at(-1);
    if (!generation) throw new Error('no generation was started');
    return generation;
  }

  chat(request: ChatRequest, onEvent: (event: ChatEvent) => void): Promise<ChatSummary> {
    return new Promise<ChatSummary>((resolve, reject) => {
      let text = '';
      this.generations.push({
        request,
        emit: onEvent,
        token(piece) {
          text += piece;
          onEvent({ kind: 'token', text: piece });
        },
        finish(summary = {}) {
          resolve({
            model: request.model,
            text,
            prompt_tokens: 12,
            generated_tokens: 3,
            prefill_tokens_per_s: 250,
            decode_tokens_per_s: 40,
            stop_reason: 'eos',
            citations: [],
            grounded: null,
            device: 'cpu',
            ...summary,
          });
        },
        fail: reject,
      });
    });
  }

  async cancelChat(): Promise<void> {
    this.cancelCalls += 1;
    if (this.cancelError) throw this.cancelError;
  }
}

/** Lets pending promise callbacks run. */
export const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
