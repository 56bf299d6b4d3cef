// The conversation state behind the Chat screen. It lives outside the component so
// a conversation (and a generation in progress) survives switching screens.
import type { ApiError } from '../../bindings/ApiError';
import type { ChatEvent } from '../../bindings/ChatEvent';
import type { ChatMessage } from '../../bindings/ChatMessage';
import type { ChatSummary } from '../../bindings/ChatSummary';
import { toApiError } from '../api-error';
import { buildChatRequest, defaultChatSettings, type ChatSettings } from './chat-settings';
import type { ChatTransport } from './chat-transport';

export type TurnStatus = 'streaming' | 'done' | 'cancelled' | 'error';

export interface ChatTurn {
  id: number;
  role: 'user' | 'assistant';
  content: string;
  status: TurnStatus;
  /** Set once the backend reports the end of prefill (assistant turns only). */
  promptTokens: number | null;
  /** Set when the answer is complete (assistant turns only). */
  summary: ChatSummary | null;
}

/** Error codes that mean "the user stopped it", not "something broke". */
const CANCELLED_CODES = new Set(['cancelled', 'canceled']);

export class ChatSession {
  turns = $state<ChatTurn[]>([]);
  error = $state<ApiError | null>(null);
  model = $state('');
  /** A trained run to answer with (its adapter, soft prompt or model), or null for the base. */
  adapter = $state<string | null>(null);
  /** A knowledge base to answer from, citing its sources, or null for a plain chat. */
  kb = $state<string | null>(null);
  /** A saved prompt template (latest version) that frames every message, or null. */
  template = $state<string | null>(null);
  settings = $state<ChatSettings>(defaultChatSettings());

  #transport: ChatTransport;
  #nextId = 1;
  #activeTurnId = $state<number | null>(null);
  #cancelRequested = false;

  constructor(transport: ChatTransport) {
    this.#transport = transport;
  }

  /** True while an answer is being generated. */
  get busy(): boolean {
    return this.#activeTurnId !== null;
  }

  /** Sends a user message and streams the answer. Ignored while busy or when blank. */
  async send(text: string): Promise<void> {
    const content = text.trim();
    if (!content || this.busy) return;
    if (!this.model) {
      this.error = { code: 'no_model', message: 'Pick a model before sending a message.' };
      return;
    }
    this.error = null;

    const conversation = [...this.#completedExchanges(), { role: 'user' as const, content }];
    const request = buildChatRequest(this.model, this.settings, conversation);
    if (this.adapter) request.adapter = this.adapter;
    if (this.kb) request.kb = this.kb;
    if (this.template) request.template = { name: this.template };

    this.turns.push(this.#newTurn('user', content, 'done'));
    this.turns.push(this.#newTurn('assistant', '', 'streaming'));
    // Read the turn back from the state array: that gives the reactive proxy.
    const answer = this.turns[this.turns.length - 1];
    this.#activeTurnId = answer.id;
    this.#cancelRequested = false;

    try {
      const summary = await this.#transport.chat(request, (event) => this.#onEvent(answer, event));
      // The summary's text is authoritative: it also covers tokens still in flight on the channel.
      answer.content = summary.text;
      answer.summary = summary;
      answer.status = summary.stop_reason === 'cancelled' ? 'cancelled' : 'done';
    } catch (reason) {
      const error = toApiError(reason);
      if (this.#cancelRequested || CANCELLED_CODES.has(error.code)) {
        answer.status = 'cancelled';
      } else {
        answer.status = 'error';
        if (this.turns.includes(answer)) this.error = error;
      }
      if (!answer.content) this.turns = this.turns.filter((turn) => turn !== answer);
    } finally {
      if (this.#activeTurnId === answer.id) this.#activeTurnId = null;
    }
  }

  /** Asks the backend to stop the answer in progress. */
  async cancel(): Promise<void> {
    if (!this.busy || this.#cancelRequested) return;
    this.#cancelRequested = true;
    try {
      await this.#transport.cancelChat();
    } catch (reason) {
      this.error = toApiError(reason);
    }
  }

  /** Empties the conversation, stopping any answer in progress. */
  clear(): void {
    if (this.busy) void this.cancel();
    this.turns = [];
    this.error = null;
  }

  dismissError(): void {
    this.error = null;
  }

  #onEvent(answer: ChatTurn, event: ChatEvent): void {
    if (answer.status !== 'streaming') return;
    if (event.kind === 'token') answer.content += event.text;
    else if (event.kind === 'prefill_done') answer.promptTokens = event.prompt_tokens;
  }

  #newTurn(role: ChatTurn['role'], content: string, status: TurnStatus): ChatTurn {
    return { id: this.#nextId++, role, content, status, promptTokens: null, summary: null };
  }

  /**
   * Earlier user/assistant pairs whose answer has text (finished or stopped part-way).
   * A question whose answer failed is left out, so roles keep alternating.
   */
  #completedExchanges(): ChatMessage[] {
    const messages: ChatMessage[] = [];
    for (let i = 0; i + 1 < this.turns.length; i++) {
      const question = this.turns[i];
      const answer = this.turns[i + 1];
      if (question.role !== 'user' || answer.role !== 'assistant') continue;
      if (answer.status === 'streaming' || answer.status === 'error' || !answer.content) continue;
      messages.push({ role: 'user', content: question.content });
      messages.push({ role: 'assistant', content: answer.content });
      i++;
    }
    return messages;
  }
}
