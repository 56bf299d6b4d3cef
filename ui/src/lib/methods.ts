// The six ways of making a model your own, in Tunelab's words, and the advisor that picks one
// from what the user needs and the data they have.
import type { Method } from '../bindings/Method';
import type { MethodId } from '../bindings/MethodId';
import GUIDE_WORDS from '../bindings/method-guide.json';
import { screenLabel, type ScreenId } from './navigation';

export type { MethodId };

/** One place in the app where a method is used. */
export interface Place {
  /** The screen that opens it; null when no screen does (the command line). */
  screen: ScreenId | null;
  /** What the user does there; shown after the screen's name ("Knowledge: drop documents…"). */
  text: string;
}

export interface MethodInfo {
  id: MethodId;
  name: string;
  /** One sentence: what changes, and what stays as it was. */
  what: string;
  goodFor: string;
  strengths: string;
  limits: string;
  cost: 'none' | 'low' | 'medium' | 'high' | 'very high';
  data: string;
  skill: string;
  /** The training method behind it in Tunelab, for the methods that train. */
  trains: Method | null;
  /** Where it is in Tunelab, the main place first. Only what the app does now. */
  availability: readonly Place[];
}

/** A method's id, name, what it is and what it is good for: the words the comparison reports
 *  use too, written once in Rust (crates/api/src/compare/guide.rs) and exported to JSON. */
function guideWords(id: MethodId): Pick<MethodInfo, 'id' | 'name' | 'what' | 'goodFor'> {
  const words = GUIDE_WORDS.find((w) => w.id === id);
  if (!words) throw new Error(`method-guide.json has no method '${id}'`);
  return { id, name: words.name, what: words.what, goodFor: words.good_for };
}

export const METHOD_GUIDE: readonly MethodInfo[] = [
  {
    ...guideWords('prompt'),
    strengths: 'free, instant, safe, works with every model',
    limits: 'steers behaviour but adds no knowledge or skill the model lacks',
    cost: 'none',
    data: 'none — a few examples help',
    skill: 'beginner',
    trains: null,
    availability: [
      {
        screen: 'prompts',
        text: "templates with a system text, {{variables}} and worked examples, rendered through the model's own chat template with their token count; saved versions frame each message in Chat",
      },
      { screen: 'chat', text: 'a system prompt in the chat settings' },
    ],
  },
  {
    ...guideWords('rag'),
    strengths: 'no training, always current, answers can cite their sources',
    limits: 'grounds facts but teaches no new way of working',
    cost: 'low',
    data: 'your documents as they are',
    skill: 'intermediate',
    trains: null,
    availability: [
      { screen: 'knowledge', text: 'drop documents into a knowledge base and search them by meaning or by words' },
      { screen: 'chat', text: 'answers from a knowledge base, citing their sources by number' },
    ],
  },
  {
    ...guideWords('soft-prompt'),
    strengths: 'tiny to train and to store (kilobytes), reversible, trains in minutes',
    limits: 'shallow: it cannot fix reasoning the model does not have',
    cost: 'low',
    data: 'tens to hundreds of examples in the target style',
    skill: 'intermediate',
    trains: 'soft-prompt',
    availability: [
      { screen: 'train', text: 'soft prompt, 20 virtual tokens by default; the result answers in Chat on its base model' },
    ],
  },
  {
    ...guideWords('lora'),
    strengths: "large effect for little memory; QLoRA needs about half of LoRA's",
    limits: 'needs clean examples; can overfit a small set',
    cost: 'medium',
    data: 'hundreds to thousands of good examples',
    skill: 'intermediate to advanced',
    trains: 'lora',
    availability: [
      { screen: 'train', text: 'LoRA, or QLoRA over a 4-bit base; the adapter answers in Chat on its base model' },
    ],
  },
  {
    ...guideWords('full'),
    strengths: 'the most control and the best task results',
    limits: 'the most memory; the model can forget what it knew; each result is a whole model',
    cost: 'high',
    data: 'a large, carefully curated set',
    skill: 'advanced',
    trains: 'full',
    availability: [{ screen: 'train', text: 'full fine-tuning; the new model answers in Chat' }],
  },
  {
    ...guideWords('pretrain'),
    strengths: 'complete control over data, vocabulary and size',
    limits: 'needs far more text and compute than any other method; at home the models stay small',
    cost: 'very high',
    data: 'millions of tokens of plain text at the least',
    skill: 'expert',
    trains: 'pretrain',
    availability: [
      { screen: 'train', text: 'pretraining a new model and tokenizer on your plain text, 1M to 120M parameters' },
      {
        screen: null,
        text: 'continued pretraining of a model you have, on the command line: tunelab train pretrain --continued --model NAME --data FILE',
      },
    ],
  },
];

/** "Knowledge: drop documents…", or the text alone for a place without a screen. */
export function placeText(place: Place): string {
  return place.screen === null ? place.text : `${screenLabel(place.screen)}: ${place.text}`;
}

/** Where training runs in this build: the CPU, or an NVIDIA GPU when built with CUDA. */
export function trainingDevice(cudaBuild: boolean): string {
  return cudaBuild
    ? 'This build trains on the NVIDIA GPU when one is found, and on the CPU otherwise.'
    : 'This build trains on the CPU; training on an NVIDIA GPU needs a build with CUDA.';
}

export type PretrainPreset = '1m' | '10m' | '30m' | '120m';

/** The sizes a new model can have, each with how long pretraining takes on a CPU; a CUDA build
 *  trains on an NVIDIA GPU when there is one, and only then is a GPU mentioned. */
export function pretrainPresets(cudaBuild: boolean): { id: PretrainPreset; label: string }[] {
  const gpu = cudaBuild ? ', less on an NVIDIA GPU' : '';
  return [
    { id: '1m', label: '1M parameters: seconds, to try the pipeline' },
    { id: '10m', label: '10M parameters: minutes on a CPU' },
    { id: '30m', label: `30M parameters: hours on a CPU${gpu}` },
    { id: '120m', label: `120M parameters: SmolLM2-135M sized, hours to days on a CPU${gpu}` },
  ];
}

export type Need = 'knowledge' | 'behaviour' | 'style' | 'task' | 'deep' | 'own-model';
export type DataAmount = 'none' | 'documents' | 'few' | 'many' | 'corpus';

export const NEEDS: readonly { id: Need; label: string }[] = [
  { id: 'knowledge', label: 'answer from our documents and data' },
  { id: 'behaviour', label: 'follow our rules inside a process' },
  { id: 'style', label: 'speak in our tone or voice' },
  { id: 'task', label: 'do a task or workflow the way we do it' },
  { id: 'deep', label: 'think like our company, deeply customized' },
  { id: 'own-model', label: 'have a model that is entirely ours' },
];

export const DATA_AMOUNTS: readonly { id: DataAmount; label: string }[] = [
  { id: 'none', label: 'nothing yet' },
  { id: 'documents', label: 'documents (manuals, policies, notes)' },
  { id: 'few', label: 'a few dozen good examples' },
  { id: 'many', label: 'hundreds or thousands of examples' },
  { id: 'corpus', label: 'a large body of plain text' },
];

export interface Advice {
  method: MethodId;
  reason: string;
  /** A second step worth taking, when there is one. */
  also: string | null;
}

/** Recommends a method for `need`, adjusted to the data the user actually has. */
export function advise(need: Need, data: DataAmount): Advice {
  const withData = (method: MethodId, reason: string, also: string | null = null): Advice => ({
    method,
    reason,
    also,
  });
  if (need === 'knowledge') {
    return withData(
      'rag',
      'facts belong in an index the model reads at answer time: it stays current, needs no training and can cite the source',
      data === 'many' ? 'with many worked examples, LoRA on top can teach the answering style' : null,
    );
  }
  if (need === 'behaviour' || data === 'none') {
    return withData(
      'prompt',
      need === 'behaviour'
        ? 'rules inside a process are instructions: a good system prompt with examples is the fastest and cheapest control'
        : 'without data nothing can be trained yet: start with instructions and examples, and collect data from the results',
    );
  }
  if (data === 'documents') {
    return withData(
      'rag',
      'documents are used best as they are, through retrieval; training would need them rewritten as examples first',
    );
  }
  if (need === 'style') {
    return data === 'few' || data === 'many'
      ? withData('soft-prompt', 'a voice is a light change: a soft prompt learns it from a small set and leaves the model intact')
      : withData('lora', 'plain text in the target voice trains LoRA adapters well; a soft prompt needs question-and-answer pairs');
  }
  if (need === 'own-model') {
    return data === 'corpus'
      ? withData('pretrain', 'a body of text is what pretraining needs; at home it builds a small model that is entirely yours')
      : withData(
          'full',
          'a model of your own needs a large text corpus; with examples, fully fine-tuning an open model is the closest step',
          'collect plain text in your domain for pretraining later',
        );
  }
  if (need === 'deep') {
    return data === 'many' || data === 'corpus'
      ? withData('full', 'with a large curated set and the memory for it, training every weight gives the most control', 'try LoRA first: it often gets most of the way for a fraction of the memory')
      : withData('lora', 'deep customization needs many examples; until then LoRA gives the largest effect per example');
  }
  // need === 'task'
  return data === 'few'
    ? withData('lora', 'a task with a clear output format is what adapters learn best; a few dozen examples already move it, more make it reliable', 'check the examples with `tunelab data check` first')
    : withData('lora', 'a task or workflow is what LoRA learns best; QLoRA does the same in about half the memory');
}
