// The workspace's lists that several screens show: models, runs, knowledge bases, saved prompts
// and comparisons. The app window holds one set (App.svelte provides it) that every screen
// reads, so a model added on the Models screen is in Chat's picker at once, a screen opened
// again shows what was read before while it reads again, and reads under way are shared.
// Reading again on open matters: another process (the CLI) may have changed the workspace.
import { getContext, setContext } from 'svelte';
import type { ApiError } from '../bindings/ApiError';
import type { CompareReport } from '../bindings/CompareReport';
import type { KnowledgeBaseInfo } from '../bindings/KnowledgeBaseInfo';
import type { ModelEntry } from '../bindings/ModelEntry';
import type { PromptSummary } from '../bindings/PromptSummary';
import type { RunListItem } from '../bindings/RunListItem';
import { listComparisons, listKnowledgeBases, listModels, listPrompts, listRuns } from './client';

/** One list read from the backend, shared by the screens that show it. */
export class SharedList<T> {
  /** The last list read; null until the first read succeeds. */
  items = $state<T[] | null>(null);
  /** Why the last read failed (the items from before it stay). */
  error = $state<ApiError | null>(null);
  readonly #read: () => Promise<T[]>;
  #reading: Promise<T[]> | null = null;
  #again: Promise<T[]> | null = null;

  constructor(read: () => Promise<T[]>) {
    this.#read = read;
  }

  /** Reads the list again and resolves with it (rejects with the ApiError, which `error` also
   *  holds). A read already under way may predate the change that asks for this one, so a
   *  call during it reads once more after it; calls during that share the second read. */
  refresh(): Promise<T[]> {
    if (!this.#reading) return this.#start();
    this.#again ??= this.#reading.then(
      () => this.#start(),
      () => this.#start(),
    );
    return this.#again;
  }

  #start(): Promise<T[]> {
    this.#again = null;
    const reading = this.#read().then(
      (items) => {
        this.items = items;
        this.error = null;
        return items;
      },
      (reason) => {
        this.error = reason as ApiError;
        throw reason;
      },
    );
    this.#reading = reading;
    const clear = () => {
      if (this.#reading === reading) this.#reading = null;
    };
    reading.then(clear, clear);
    return reading;
  }
}

/** The lists one app window shares (each read only when a screen asks for it). */
export class WorkspaceLists {
  readonly models = new SharedList<ModelEntry>(() => listModels());
  readonly runs = new SharedList<RunListItem>(() => listRuns());
  readonly knowledgeBases = new SharedList<KnowledgeBaseInfo>(() => listKnowledgeBases());
  readonly prompts = new SharedList<PromptSummary>(() => listPrompts());
  readonly comparisons = new SharedList<CompareReport>(() => listComparisons());
}

const KEY = Symbol('workspace-lists');

/** Makes one set of lists the one every screen under the calling component reads. */
export function provideWorkspaceLists(): WorkspaceLists {
  return setContext(KEY, new WorkspaceLists());
}

/** The lists the app window shares; a screen shown on its own (as in its tests) gets its own. */
export function workspaceLists(): WorkspaceLists {
  return getContext<WorkspaceLists | undefined>(KEY) ?? new WorkspaceLists();
}
