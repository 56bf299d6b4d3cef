// Sample backend payloads for component tests.
import type { HardwareReport } from '../../src/bindings/HardwareReport';
import type { ModelEntry } from '../../src/bindings/ModelEntry';
import type { RunListItem } from '../../src/bindings/RunListItem';
import type { RunStatus } from '../../src/bindings/RunStatus';

const GiB = 1024 ** 3;

export const NO_GPU_NOTE = 'No NVIDIA GPU was found (NVML is not available), so models run on the CPU.';

export function cpuOnlyReport(): HardwareReport {
  return {
    gpus: [],
    gpu_note: NO_GPU_NOTE,
    driver_version: null,
    cuda_version: null,
    cpu: {
      model: 'AMD Ryzen 7 7700X',
      physical_cores: 8,
      logical_cores: 16,
      utilization_percent: 12.4,
      instruction_sets: {
        present: ['avx', 'avx2', 'fma', 'avx512f'],
        required: ['avx', 'avx2', 'fma'],
        checked_at_start: true,
      },
    },
    memory: { total_bytes: 32 * GiB, available_bytes: 20 * GiB, used_bytes: 12 * GiB },
  };
}

export function gpuReport(): HardwareReport {
  return {
    ...cpuOnlyReport(),
    gpu_note: null,
    driver_version: '550.54.14',
    cuda_version: '12.4',
    gpus: [
      {
        index: 0,
        name: 'NVIDIA GeForce RTX 4090',
        uuid: 'GPU-1234',
        memory_total_bytes: 24 * GiB,
        memory_used_bytes: 5.2 * GiB,
        memory_free_bytes: 18.8 * GiB,
        utilization_percent: 37,
        temperature_c: 54,
        power_draw_watts: 182.3,
        power_limit_watts: 450,
        compute_capability: '8.9',
      },
    ],
  };
}

export function smolModel(): ModelEntry {
  return {
    name: 'smollm2-135m-instruct',
    role: 'chat',
    format: 'gguf',
    path: '/home/me/.tunelab/models/smollm2-135m-instruct.gguf',
    architecture: 'llama',
    quantization: 'Q8_0',
    parameters: 134_515_008,
    context_length: 8192,
    size_bytes: 144_811_680,
    description: 'Small instruction-tuned chat model, fast on any CPU.',
    problem: null,
    files_owned: true,
  };
}

export function embeddingModel(): ModelEntry {
  return {
    name: 'all-minilm-l6-v2',
    role: 'embedding',
    format: 'hf',
    path: '/home/me/.tunelab/models/all-minilm-l6-v2',
    architecture: 'bert',
    quantization: null,
    parameters: 22_713_216,
    context_length: 512,
    size_bytes: 90_868_376,
    description: 'Sentence embeddings for search.',
    problem: null,
    files_owned: true,
  };
}

export const BROKEN_MODEL_PROBLEM = 'Cannot read model.gguf: unexpected end of file (the download may be incomplete).';

/** A chat model whose files cannot be read. */
export function brokenModel(): ModelEntry {
  return {
    ...smolModel(),
    name: 'qwen2.5-0.5b-instruct',
    path: '/home/me/.tunelab/models/qwen2.5-0.5b-instruct.gguf',
    architecture: '',
    quantization: null,
    parameters: null,
    context_length: null,
    size_bytes: 12_345,
    description: '',
    problem: BROKEN_MODEL_PROBLEM,
    files_owned: false,
  };
}

/** A QLoRA run of the default model, finished unless `status` says otherwise. */
export function runItem(id: string, status: RunStatus = 'completed'): RunListItem {
  return {
    id,
    method: 'qlora',
    model: 'smollm2-135m-instruct',
    status,
    holder: null,
    error: null,
    can_resume: status === 'cancelled' || status === 'interrupted' || status === 'failed',
    steps: 30,
    total_steps: 30,
    final_loss: 0.5,
    val_loss: 0.12,
    val_perplexity: 1.13,
    tokens_seen: 12000,
    peak_rss_bytes: 600 * 1024 * 1024,
    wall_time_s: 95,
    device: 'cpu',
    gpu: null,
    cpu_energy: null,
    started_at: 1,
    has_artifact: status === 'completed',
    export_formats: status === 'completed' ? ['gguf', 'merged', 'peft'] : [],
  };
}
