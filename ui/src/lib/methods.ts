// The six ways of making a model your own, in Tunelab's words, and the advisor that picks one
// from what the user needs and the data they have.
import type { Method } from '../bindings/Method';

export type MethodId = 'prompt' | 'rag' | 'soft-prompt' | 'lora' | 'full' | 'pretrain';

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
  /** Where to find it in the app today, or when it arrives. */
  availability: string;
}

export const METHOD_GUIDE: readonly MethodInfo[] = [
  {
    id: 'prompt',
    name: 'Prompt engineering',
    what: 'Instructions, examples and a template around each question; the model itself is untouched.',
    goodFor: 'scripted conversations, fixed business rules, a first version of anything',
    strengths: 'free, instant, safe, works with every model',
    limits: 'steers behaviour but adds no knowledge or skill the model lacks',
    cost: 'none',
    data: 'none — a few examples help',
    skill: 'beginner',
    trains: null,
    availability: 'the system prompt in Chat today; the prompt studio comes next',
  },
  {
    id: 'rag',
    name: 'Retrieval (RAG)',
    what: 'Your documents are indexed; the passages that match a question are handed to the model with it.',
    goodFor: 'policies, manuals, product catalogues, anything that changes and must be quoted',
    strengths: 'no training, always current, answers can cite their sources',
    limits: 'grounds facts but teaches no new way of working',
    cost: 'low',
    data: 'your documents as they are',
    skill: 'intermediate',
    trains: null,
    availability: 'arrives with knowledge bases',
  },
  {
    id: 'soft-prompt',
    name: 'Soft prompt',
    what: 'A handful of learned token vectors sit before every input; every weight of the model stays frozen.',
    goodFor: 'a voice, a tone, a house style, light adaptation to a domain',
    strengths: 'tiny to train and to store (kilobytes), reversible, trains in minutes',
    limits: 'shallow: it cannot fix reasoning the model does not have',
    cost: 'low',
    data: 'tens to hundreds of examples in the target style',
    skill: 'intermediate',
    trains: 'soft-prompt',
    availability: 'Train → Soft prompt',
  },
  {
    id: 'lora',
    name: 'LoRA / QLoRA',
    what: 'Small low-rank matrices are trained next to the frozen weights; QLoRA keeps those weights in 4 bits.',
    goodFor: 'a task with a fixed output format, an industry workflow, multi-step procedures',
    strengths: 'large effect for little memory; QLoRA fits on small GPUs and plain CPUs',
    limits: 'needs clean examples; can overfit a small set',
    cost: 'medium',
    data: 'hundreds to thousands of good examples',
    skill: 'intermediate to advanced',
    trains: 'lora',
    availability: 'Train → LoRA or QLoRA',
  },
  {
    id: 'full',
    name: 'Full fine-tuning',
    what: 'Every weight of the model is trained on your data.',
    goodFor: 'a deeply specialised assistant where adapters are not enough',
    strengths: 'the most control and the best task results',
    limits: 'the most memory; the model can forget what it knew; each result is a whole model',
    cost: 'high',
    data: 'a large, carefully curated set',
    skill: 'advanced',
    trains: 'full',
    availability: 'Train → Full fine-tuning',
  },
  {
    id: 'pretrain',
    name: 'Pretraining',
    what: 'A new model and tokenizer learn language from your own text, or an existing model keeps learning from it.',
    goodFor: 'owning a model end to end; a language or domain general models barely know',
    strengths: 'complete control over data, vocabulary and size',
    limits: 'needs far more text and compute than any other method; at home the models stay small',
    cost: 'very high',
    data: 'millions of tokens of plain text at the least',
    skill: 'expert',
    trains: 'pretrain',
    availability: 'Train → Pretraining',
  },
];

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
      'documents are used best as they are, through retrieval; turning them into training examples comes later',
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
    : withData('lora', 'a task or workflow is what LoRA learns best; QLoRA does the same in a quarter of the memory');
}
