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
