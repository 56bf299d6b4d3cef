// Two chats answering the same messages with different configurations, side by side. The
// backend generates one answer at a time, so the right side answers after the left.
import type { ChatSession } from './chat-session.svelte';

export class ChatComparison {
  readonly left: ChatSession;
  readonly right: ChatSession;
  #stopped = false;

  constructor(left: ChatSession, right: ChatSession) {
    this.left = left;
    this.right = right;
  }

  get busy(): boolean {
    return this.left.busy || this.right.busy;
  }

  /** Sends `text` to the left chat, then (unless stopped) to the right one. */
  async send(text: string): Promise<void> {
    if (this.busy || !text.trim()) return;
    this.#stopped = false;
    // One set of sampling settings for both sides, so only the configurations differ.
    this.right.settings = { ...this.left.settings };
    await this.left.send(text);
    const last = this.left.turns.at(-1);
    // A stop ends the round: the right side does not start an answer the user just stopped.
    if (this.#stopped || (last?.role === 'assistant' && last.status === 'cancelled')) return;
    await this.right.send(text);
  }

  /** Stops the answer in progress and the round it belongs to. */
  async cancel(): Promise<void> {
    this.#stopped = true;
    if (this.left.busy) await this.left.cancel();
    else if (this.right.busy) await this.right.cancel();
  }

  clear(): void {
    this.#stopped = true;
    this.left.clear();
    this.right.clear();
  }
}
