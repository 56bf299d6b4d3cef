#!/usr/bin/env python3
"""Summarises scripts/bench-vs-reference.sh's results.jsonl as a Markdown table of ratios.

Each line of the results is {"bench", "side" (tunelab|reference), "round", "result"}; a
round's ratio pairs Tunelab's figure with the reference's from the same round. The table gives
each side's median with its range, and the ratio's median with its range over the rounds,
next to the mark the project holds itself to.
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict

MIB = 1 << 20

# benchmark -> rows of (label, Tunelab's figure, the reference's figure, unit, mark)
# A mark is the least ratio that meets it; memory rows want the ratio at or under it.
TRAIN = {
    "lora": "LoRA r16, checkpointing on",
    "lora-nockpt": "LoRA r16, checkpointing off",
    "soft-prompt": "soft prompt (20 tokens), checkpointing on",
    "soft-prompt-nockpt": "soft prompt (20 tokens), checkpointing off",
    "full": "full fine-tuning, checkpointing on",
    "full-nockpt": "full fine-tuning, checkpointing off",
}


def rows_for(bench):
    if bench in TRAIN:
        speed_mark = 1.3 if bench.endswith("nockpt") else 1.0
        memory_mark = 0.5 if bench.endswith("nockpt") else None
        return [
            (f"{TRAIN[bench]}: speed", lambda r: r["tokens_per_s"], lambda r: r["tokens_per_s"],
             "tokens/s", (">=", speed_mark)),
            (f"{TRAIN[bench]}: peak memory", lambda r: r["peak_rss_bytes"] / MIB,
             lambda r: r["peak_rss_mb"], "MiB", ("<=", memory_mark)),
        ]
    if bench == "decode":
        return [
            ("prefill (264 tokens, Q4_1)", lambda r: r["prefill_tokens_per_s"],
             lambda r: r["prefill_tokens_per_s"], "tokens/s", (">=", 1.5)),
            ("decode (128 greedy tokens)", lambda r: r["decode_tokens_per_s"],
             lambda r: r["decode_tokens_per_s"], "tokens/s", (">=", 1.2)),
        ]
    if bench == "embed":
        return [
            ("all-MiniLM-L6-v2 embedding", lambda r: r["sentences_per_s"],
             lambda r: r["sentences_per_s"], "sentences/s", (">=", 1.3)),
        ]
    raise SystemExit(f"bench_ratios: unknown benchmark {bench!r}")


def spread(values, digits):
    values = sorted(values)
    fmt = f"{{:.{digits}f}}"
    if values[0] == values[-1]:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--machine", default="this machine")
    a = ap.parse_args()
    by = defaultdict(dict)  # (bench, round) -> side -> result
    order = []
    with open(a.results) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
                by[(e["bench"], e["round"])][e["side"]] = e["result"]
            except (ValueError, KeyError) as err:
                raise SystemExit(f"bench_ratios: {a.results} line {n}: {err}")
            if e["bench"] not in order:
                order.append(e["bench"])
    rounds = sorted({r for (_, r) in by})
    print(f"Tunelab / reference on {a.machine}, {len(rounds)} round(s), alternating.\n")
    print("| benchmark | Tunelab | reference | ratio | mark |")
    print("|---|---|---|---|---|")
    missed = 0
    for bench in order:
        pairs = [by[(bench, r)] for r in rounds if len(by.get((bench, r), {})) == 2]
        if not pairs:
            continue
        for label, ours, theirs, unit, (sense, mark) in rows_for(bench):
            t = [ours(p["tunelab"]) for p in pairs]
            ref = [theirs(p["reference"]) for p in pairs]
            ratios = [x / y for x, y in zip(t, ref)]
            median = statistics.median(ratios)
            if mark is None:
                verdict = ""
            else:
                met = median >= mark if sense == ">=" else median <= mark
                missed += not met
                verdict = f"{sense} {mark}× {'met' if met else 'missed'}"
            print(f"| {label} | {spread(t, 1)} {unit} | {spread(ref, 1)} {unit} | "
                  f"{spread(ratios, 2)}× | {verdict} |")
    print(f"\n{missed} mark(s) missed.")


if __name__ == "__main__":
    sys.exit(main())
