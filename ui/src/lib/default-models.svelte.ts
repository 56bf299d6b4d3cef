// The default models' download, kept outside the Home screen so that leaving Home and coming
// back shows the download still under way (and cannot start a second one).
import type { ApiError } from '../bindings/ApiError';
import type { DefaultModelStatus } from '../bindings/DefaultModelStatus';
import type { DownloadProgress } from '../bindings/DownloadProgress';
import { cancelDefaultModels, defaultModels, installDefaultModels } from './client';

export class DefaultModelsDownload {
  status = $state<DefaultModelStatus[] | null>(null);
  downloading = $state(false);
  stopping = $state(false);
  /** The last download was stopped; what arrived is kept and the next one resumes. */
  stopped = $state(false);
  progress = $state<DownloadProgress | null>(null);
  error = $state<ApiError | null>(null);

  readonly missing = $derived((this.status ?? []).filter((m) => !m.installed));
  /** Told whenever a model arrived (even if a later one was stopped or failed); the Home
   *  screen on show sets it, so a download started before leaving Home still reaches it. */
  onInstalled: (() => void) | null = null;

  async refresh(): Promise<void> {
    try {
      this.status = await defaultModels();
    } catch {
      // Without a backend (or its answer) there is nothing to offer; the model list says why.
      this.status = [];
    }
  }

  /** Downloads what is missing. */
  async download(): Promise<void> {
    if (this.downloading) return;
    this.downloading = true;
    this.stopped = false;
    this.error = null;
    this.progress = null;
    const before = this.missing.length;
    try {
      await installDefaultModels((event) => (this.progress = event));
    } catch (failure) {
      const apiError = failure as ApiError;
      if (apiError.code === 'cancelled') this.stopped = true;
      else this.error = apiError;
    } finally {
      this.downloading = false;
      this.stopping = false;
      await this.refresh();
      if (this.missing.length < before) this.onInstalled?.();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await cancelDefaultModels();
  }
}

/** The app's one download of the default models. */
export const defaultModelsDownload = new DefaultModelsDownload();
