import type { ApiError } from '../../bindings/ApiError';
import type { ChatEvent } from '../../bindings/ChatEvent';
import type { ChatRequest } from '../../bindings/ChatRequest';
import type { ChatSummary } from '../../bindings/ChatSummary';

/**
 * What the chat logic needs from the backend. The real implementation lives in
 * lib/client.ts; tests pass a fake so the logic runs without Tauri.
 */
export interface ChatTransport {
  /** Starts a generation; streams events to onEvent and resolves with the summary when done. */
  chat(request: ChatRequest, onEvent: (event: ChatEvent) => void): Promise<ChatSummary>;
  /** Asks the backend to stop the generation in progress. */
  cancelChat(): Promise<void>;
}

/** Rejection when a second answer is asked for while one is still being generated. */
export const CHAT_BUSY_ERROR: ApiError = {
  code: 'busy',
  message: 'Another chat is still answering. Wait for it to finish or stop it, then send again.',
};

/**
 * Lets the sessions that share the returned transport generate one answer at a time. The
 * backend has a single stop switch for all generations, so two at once would stop together.
 */
export function oneAtATime(transport: ChatTransport): ChatTransport {
  let running = false;
  return {
    async chat(request, onEvent) {
      if (running) throw { ...CHAT_BUSY_ERROR };
      running = true;
      try {
        return await transport.chat(request, onEvent);
      } finally {
        running = false;
      }
    },
    cancelChat: () => transport.cancelChat(),
  };
}
