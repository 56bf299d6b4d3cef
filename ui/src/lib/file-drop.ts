// Files and folders dropped on the window: Tauri reports them as paths through the webview's
// drag-and-drop events (a browser tab gets none, so there it does nothing).
import { backendAvailable } from './client';

export interface FileDropHandlers {
  /** Something is being dragged over the window (true) or left it (false). */
  onHover: (hovering: boolean) => void;
  /** Paths dropped on the window. */
  onDrop: (paths: string[]) => void;
}

/** Starts listening; resolves with the function that stops it. */
export async function listenForFileDrops(handlers: FileDropHandlers): Promise<() => void> {
  if (!backendAvailable()) return () => {};
  const { getCurrentWebview } = await import('@tauri-apps/api/webview');
  return getCurrentWebview().onDragDropEvent((event) => {
    const payload = event.payload;
    if (payload.type === 'enter' || payload.type === 'over') handlers.onHover(true);
    else if (payload.type === 'leave') handlers.onHover(false);
    else if (payload.type === 'drop') {
      handlers.onHover(false);
      handlers.onDrop(payload.paths);
    }
  });
}
