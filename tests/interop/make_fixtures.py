#!/usr/bin/env python3
"""Writes the interop fixtures (run through make.sh, which sets up the environment).

Four adapters of the default model, each with the logits Hugging Face PEFT gives with it:
  peft-lora/            LoRA trained by PEFT (rank-stabilised, all seven projections of three
                        layers, so `layers_to_transform` and rsLoRA's scale are both exercised)
  peft-prompt-tuning/   a soft prompt trained by PEFT (prompt tuning, 8 virtual tokens)
  tunelab-lora/         a Tunelab run (`tunelab train lora`): config, metrics, summary, artifact
  tunelab-soft-prompt/  a Tunelab run (`tunelab train soft-prompt`)
and, for the Tunelab LoRA run exported here as GGUF (q8_0), llama.cpp's greedy tokens and its
logits over them, with the file's SHA-256.

The base is read as the project's parity fixtures read it: transformers loading the GGUF, its
Q4_1 blocks dequantized to float32. Everything is seeded; expected.json records the versions.
"""
import argparse, copy, importlib.util, json, os, shutil, subprocess, sys, tempfile
from pathlib import Path

import torch
import transformers
import peft
from peft import LoraConfig, PeftModel, PromptTuningConfig, PromptTuningInit, get_peft_model
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
PIRATE = ROOT / "datasets" / "soft-prompt-pirate" / "train.jsonl"
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Three prompts: plain text, and two turns through the chat template (rendered in main()).
PLAIN = "Once upon a time, there was a little robot who"
QUESTIONS = ["What is the capital of France?", "How do I learn to swim?"]
GREEDY_TOKENS = 16


def _fetch_models():
    """scripts/fetch-models.py, for where the model cache is and its SHA-256 helper."""
    spec = importlib.util.spec_from_file_location("fetch_models", ROOT / "scripts" / "fetch-models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FETCH = _fetch_models()
models_dir, sha256 = FETCH.models_dir_default, FETCH.sha256


def pirate_pairs(n: int):
    rows = [json.loads(line) for line in PIRATE.read_text().splitlines() if line.strip()]
    return [(r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows[:n]]


def record(model, prompts, n_virtual=0):
    """Top-10 logits at every position and the greedy continuation of each prompt."""
    out = []
    model.eval()
    for prompt, ids in prompts:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            if logits.shape[0] == len(ids) + n_virtual:
                logits = logits[n_virtual:]
            assert logits.shape[0] == len(ids), (logits.shape, len(ids), n_virtual)
            positions = []
            for p in range(len(ids)):
                row = logits[p]
                top = torch.topk(row, 10)
                positions.append({
                    "position": p,
                    "top10_ids": top.indices.tolist(),
                    "top10_logits": [round(v, 5) for v in top.values.tolist()],
                    "mean": round(row.mean().item(), 6),
                    "std": round(row.std(unbiased=False).item(), 6),
                })
            # Greedy by definition: the most likely token after the whole sequence, each time
            # computed from scratch (no cache, no end-of-sequence rule), so the reference is
            # the model's forward pass and nothing of `generate`'s.
            greedy = []
            for _ in range(GREEDY_TOKENS):
                row = model(input_ids=torch.tensor([ids + greedy])).logits[0, -1]
                greedy.append(int(row.argmax()))
        out.append({"prompt": prompt, "ids": ids, "positions": positions,
                    "greedy_16": greedy})
    return out


def chat_example(tok, question, answer):
    prompt = tok.apply_chat_template([{"role": "user", "content": question}],
                                     tokenize=False, add_generation_prompt=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    return p + r, [-100] * len(p) + r


def train(model, tok, steps, lr):
    """A few AdamW steps on pirate answers (loss on the answers), so every trained tensor moves."""
    torch.manual_seed(0)
    examples = [chat_example(tok, q, a) for q, a in pirate_pairs(8)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        ids, labels = examples[step % len(examples)]
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(round(loss.item(), 4))
    model.eval()
    return losses


def check_loaded(peft_model, adapter_dir: Path):
    """Every tensor of the adapter file is in the PEFT model, unchanged, and nothing else is."""
    saved = load_file(adapter_dir / "adapter_model.safetensors")
    state = peft.get_peft_model_state_dict(peft_model)
    assert set(saved) == set(state), f"{adapter_dir}: keys differ: {set(saved) ^ set(state)}"
    for key, value in saved.items():
        assert torch.equal(state[key].to(value.dtype), value), f"{adapter_dir}: {key} changed"
    return len(saved)


def save_peft(model, dest: Path):
    """PEFT's own files, without its model-card template and this machine's paths."""
    shutil.rmtree(dest, ignore_errors=True)
    model.save_pretrained(dest)
    (dest / "README.md").unlink(missing_ok=True)
    config = json.loads((dest / "adapter_config.json").read_text())
    for key in ["base_model_name_or_path", "tokenizer_name_or_path"]:
        if config.get(key):
            config[key] = BASE_NAME
    if isinstance(config.get("target_modules"), list):
        # PEFT writes them from a set, in a different order each run.
        config["target_modules"] = sorted(config["target_modules"])
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def tunelab(binary, *args):
    print("$ tunelab " + " ".join(args), flush=True)
    subprocess.run([binary, *args], check=True)


def keep_run(run: Path, to: Path):
    """The parts of a run folder export needs: config, metrics, summary, artifact."""
    if to.exists():
        shutil.rmtree(to)
    (to / "artifact").mkdir(parents=True)
    for name in ["config.json", "metrics.jsonl", "summary.json"]:
        shutil.copy(run / name, to / name)
    for f in (run / "artifact").iterdir():
        shutil.copy(f, to / "artifact" / f.name)
    # The data path is the checkout's, not this machine's.
    config = json.loads((to / "config.json").read_text())
    config["data"] = str(Path(config["data"]).resolve().relative_to(ROOT))
    (to / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tunelab", required=True, help="the tunelab binary")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    gguf_dir = models_dir() / "smollm2-135m-instruct"
    tok = transformers.AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
    base = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32)
    base.eval()
    prompts = [(PLAIN, tok(PLAIN, add_special_tokens=False)["input_ids"])]
    for q in QUESTIONS:
        text = tok.apply_chat_template([{"role": "user", "content": q}],
                                       tokenize=False, add_generation_prompt=True)
        prompts.append((text, tok(text, add_special_tokens=False)["input_ids"]))

    expected = {
        "source": (f"Hugging Face PEFT {peft.__version__} with transformers {transformers.__version__}"
                   f" and torch {torch.__version__}, reading {GGUF_NAME} (weights dequantized to"
                   " float32); made by tests/interop/make.sh"),
        "adapters": {},
    }

    # 1. LoRA trained by PEFT.
    print("== PEFT LoRA", flush=True)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True,
                        target_modules=ALL_LINEAR, layers_to_transform=[0, 15, 29],
                        task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(base), config)
    losses = train(model, tok, steps=12, lr=3e-3)
    save_peft(model, out / "peft-lora")
    expected["adapters"]["peft-lora"] = {"trained_by": "peft", "losses": losses,
                                         "logits": record(model, prompts)}
    del model

    # 2. Prompt tuning trained by PEFT.
    print("== PEFT prompt tuning", flush=True)
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8,
                                prompt_tuning_init=PromptTuningInit.RANDOM)
    model = get_peft_model(copy.deepcopy(base), config)
    losses = train(model, tok, steps=12, lr=3e-2)
    save_peft(model, out / "peft-prompt-tuning")
    expected["adapters"]["peft-prompt-tuning"] = {
        "trained_by": "peft", "losses": losses, "logits": record(model, prompts, n_virtual=8)}
    del model

    with tempfile.TemporaryDirectory(prefix="tunelab-interop-") as work:
        work = Path(work)
        # 3. A LoRA and a soft prompt trained by Tunelab, loaded into PEFT.
        lora_toml = work / "lora.toml"
        lora_toml.write_text('[lora]\ntargets = ["q_proj", "v_proj"]\nrank = 4\nalpha = 8.0\n')
        common = ["--data", str(PIRATE), "--max-steps", "8", "--batch-size", "2",
                  "--seq-len", "128", "--device", "cpu"]
        tunelab(args.tunelab, "train", "lora", "--config", str(lora_toml), "--lr", "3e-3",
                "--out", str(work / "tunelab-lora"), *common)
        tunelab(args.tunelab, "train", "soft-prompt", "--virtual-tokens", "8",
                "--init-text", "Answer like a pirate.", "--lr", "3e-2",
                "--out", str(work / "tunelab-soft-prompt"), *common)
        for name, n_virtual in [("tunelab-lora", 0), ("tunelab-soft-prompt", 8)]:
            print(f"== {name} in PEFT", flush=True)
            keep_run(work / name, out / name)
            artifact = out / name / "artifact"
            model = PeftModel.from_pretrained(copy.deepcopy(base), artifact)
            keys = check_loaded(model, artifact)
            expected["adapters"][name] = {"trained_by": "tunelab", "peft_loaded_keys": keys,
                                          "logits": record(model, prompts, n_virtual)}
            del model

        # 4. The Tunelab LoRA run as GGUF, answered by llama.cpp.
        print("== GGUF in llama.cpp", flush=True)
        export = work / "export"
        tunelab(args.tunelab, "export", str(out / "tunelab-lora"), "--format", "gguf",
                "--quant", "q8_0", "--out", str(export))
        [gguf] = list(export.glob("*.gguf"))
        import llama_cpp
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, n_threads=os.cpu_count() or 1,
                              logits_all=True, verbose=False)
        cases = []
        for prompt, ids in prompts:
            llm.reset()
            got = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            assert got == ids, f"llama.cpp tokenizes {prompt!r} as {got}, transformers as {ids}"
            tokens = []
            for t in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                tokens.append(t)
                if len(tokens) == GREEDY_TOKENS:
                    break
            # llama.cpp's logits over the prompt and its own answer, every position.
            llm.reset()
            llm.eval(ids + tokens)
            positions = []
            for p in range(len(ids) + len(tokens) - 1):
                row = torch.tensor(llm.scores[p], dtype=torch.float64)
                top = torch.topk(row, 10)
                positions.append({
                    "position": p,
                    "top10_ids": top.indices.tolist(),
                    "top10_logits": [round(v, 5) for v in top.values.tolist()],
                })
            cases.append({"prompt": prompt, "ids": ids, "greedy_16": tokens,
                          "positions": positions})
        expected["gguf"] = {
            "source": f"llama-cpp-python {llama_cpp.__version__}",
            "run": "tunelab-lora",
            "quant": "q8_0",
            "file": gguf.name,
            "sha256": sha256(gguf),
            "bytes": gguf.stat().st_size,
            "cases": cases,
        }

    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
