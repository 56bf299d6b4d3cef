#!/usr/bin/env python3
"""Writes the compare-demo task's data from kb-brightloom's questions (standard library only).

The 38 questions are split in two by a fixed rule (every second one is held out):
- train.jsonl: the 19 kept questions, each in three phrasings, answered in the house format;
- eval.jsonl: the 19 held-out questions with the house-format reference, the fact the answer
  must contain, the format as a regex, and the document that answers it.

A trained method sees the house format and the kept questions' facts, never the held-out
facts; the knowledge base holds every fact and no format. So tuning should win on the format
and retrieval on the facts, which is what the comparison is meant to show.
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE.parent / "kb-brightloom" / "questions.jsonl"
OPENING = "Brightloom Support:"
CLOSING = "Ride on!"
FORMAT = r"^Brightloom Support: .+ Ride on!$"
PHRASINGS = ["{q}", "Hi there! {q}", "Quick question about my Brightloom: {q}"]


def reply(answer: str) -> str:
    answer = answer.rstrip(".")
    return f"{OPENING} {answer[0].upper()}{answer[1:]}. {CLOSING}"


def main() -> None:
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    kept, held = rows[0::2], rows[1::2]
    with open(HERE / "train.jsonl", "w") as out:
        for row in kept:
            for phrasing in PHRASINGS:
                messages = [
                    {"role": "user", "content": phrasing.format(q=row["question"])},
                    {"role": "assistant", "content": reply(row["answer"])},
                ]
                out.write(json.dumps({"messages": messages}) + "\n")
    with open(HERE / "eval.jsonl", "w") as out:
        for row in held:
            line = {
                "prompt": row["question"],
                "reference": reply(row["answer"]),
                "must_contain": [row["answer"]],
                "regex": FORMAT,
                "source": row["sources"],
            }
            out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
