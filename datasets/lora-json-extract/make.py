#!/usr/bin/env python3
"""Writes train.jsonl: customer messages to a pizzeria and the one-line JSON a model should
extract from each, and eval.jsonl: messages the training set does not hold, for `tunelab eval`
(each asks for JSON with the keys in order). Deterministic: the same seed always writes the
same files.

    python3 datasets/lora-json-extract/make.py            # rewrites train.jsonl and eval.jsonl
    python3 datasets/lora-json-extract/make.py --check '{"intent":"order",...}'
"""

import json
import random
import sys
from pathlib import Path

SEED = 20251128
COUNT = 160
EVAL_COUNT = 40
# What eval.jsonl asks of an answer's shape: the keys in order, intent one of four.
SHAPE = r'^\{"intent":"(order|cancel|complaint|question)","items":\[.*\],"name":.*,"address":.*,"time":.*\}$'
KEYS = ["intent", "items", "name", "address", "time"]
INTENTS = ["order", "cancel", "complaint", "question"]
SYSTEM = (
    "Extract the customer's request as one line of JSON with the keys intent, items, name, "
    "address, time in that order. intent is order, cancel, complaint or question; items is a "
    "list of {\"item\", \"qty\"}; time is \"<day> HH:MM\". Use null for anything not given."
)

NAMES = ["Dana", "Priya", "Marcus", "Yuki", "Olu", "Sofia", "Liam", "Chen", "Amara", "Tomasz",
         "Fatima", "Diego", "Hannah", "Ravi", "Ingrid", "Kwame", "Lucia", "Noah", "Mei", "Jonas"]
STREETS = ["Oak Street", "Birch Lane", "Harbor Road", "Maple Avenue", "Mill Road", "Elm Close",
           "Station Street", "Park Terrace", "River Walk", "Church Lane", "Hill Crescent"]
PIZZAS = ["margherita", "pepperoni", "hawaiian", "veggie", "four cheese", "bbq chicken"]
SIZES = ["small", "medium", "large"]
SIDES = ["garlic bread", "fries", "caesar salad", "chicken wings", "tiramisu", "cola", "lemonade"]
COUNT_WORDS = {1: ["a", "one", "1"], 2: ["two", "2"], 3: ["three", "3"], 4: ["four", "4"]}
DAYS = ["today", "tomorrow", "friday", "saturday", "sunday", "monday"]
QUESTIONS = [
    ("Do you have a gluten-free crust?", []),
    ("Are you open on bank holidays?", []),
    ("How long does delivery usually take to {street}?", []),
    ("Is the {pizza} pizza spicy?", ["pizza"]),
    ("Can I pay by card when the driver arrives?", []),
    ("Does the {side} come with a dip?", ["side"]),
    ("What's the largest size you do for the {pizza}?", ["pizza"]),
    ("Do you deliver as far as {street}?", []),
]


def clock(rng):
    """A time as written by a customer, and as 24-hour HH:MM."""
    hour = rng.choice([11, 12, 13, 17, 18, 19, 20, 21])
    minute = rng.choice([0, 0, 15, 30, 45])
    h12 = hour - 12 if hour > 12 else hour
    suffix = "pm" if hour >= 12 else "am"
    spoken = [f"{h12}{suffix}" if minute == 0 else f"{h12}:{minute:02d}{suffix}",
              f"{h12}:{minute:02d} {suffix}", f"{hour}:{minute:02d}"]
    return rng.choice(spoken), f"{hour:02d}:{minute:02d}"


def when(rng):
    day = rng.choice(DAYS)
    said, hhmm = clock(rng)
    day_said = {"today": rng.choice(["today", "this evening"] if hhmm >= "17" else ["today"]),
                "friday": "on Friday", "saturday": "on Saturday", "sunday": "this Sunday",
                "monday": "next Monday"}.get(day, day)
    return rng.choice([f"{day_said} at {said}", f"at {said} {day_said}"]), f"{day} {hhmm}"


def items(rng, most=3):
    chosen = []
    for _ in range(rng.randint(1, most)):
        qty = rng.choice([1, 1, 1, 2, 2, 3, 4])
        if rng.random() < 0.65:
            size = rng.choice(SIZES)
            item = f"{size} {rng.choice(PIZZAS)} pizza"
        else:
            item = rng.choice(SIDES)
        if item in (c["item"] for c in chosen):
            continue
        chosen.append({"item": item, "qty": qty})
    return chosen


def say_items(rng, chosen):
    parts = []
    for c in chosen:
        word = rng.choice(COUNT_WORDS[c["qty"]])
        noun = c["item"]
        if noun in ("fries", "chicken wings"):
            noun = ("portion of " if c["qty"] == 1 else "portions of ") + noun
        elif c["qty"] > 1 and noun.endswith("pizza"):
            noun += "s"
        elif c["qty"] > 1 and noun in ("cola", "lemonade"):
            noun = f"{noun}s"
        parts.append(f"{word} {noun}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def address(rng):
    return f"{rng.randint(1, 240)} {rng.choice(STREETS)}"


def order(rng):
    chosen = items(rng)
    name = rng.choice(NAMES) if rng.random() < 0.8 else None
    addr = address(rng) if rng.random() < 0.7 else None
    said_time, time = when(rng) if rng.random() < 0.7 else (None, None)
    opening = rng.choice(["Hi, I'd like", "Hello! Can I get", "Could I order", "hey can i get",
                          "Good evening, please send", "I want to order"])
    text = f"{opening} {say_items(rng, chosen)}"
    if addr:
        text += rng.choice([f" delivered to {addr}", f" to {addr} please", f", address is {addr}"])
    elif rng.random() < 0.5:
        text += rng.choice([" for pickup", ", I'll collect it"])
    if said_time:
        text += f" {said_time}"
    text += "."
    if name:
        text += rng.choice([f" Name is {name}.", f" It's {name}.", f" This is {name}.", f" Under {name} please."])
    return text, {"intent": "order", "items": chosen, "name": name, "address": addr, "time": time}


def cancel(rng):
    name = rng.choice(NAMES) if rng.random() < 0.85 else None
    chosen = items(rng, 2) if rng.random() < 0.4 else []
    said_time, time = when(rng) if rng.random() < 0.6 else (None, None)
    text = rng.choice(["Please cancel my order", "I need to cancel the order", "Cancel my booking",
                       "Sorry, can you cancel my order", "Something came up, please cancel the order"])
    if chosen:
        text += f" of {say_items(rng, chosen)}"
    if said_time:
        text += f" for {said_time.removeprefix('at ')}" if said_time.startswith("at") else f" {said_time}"
    text += "."
    if name:
        text += rng.choice([f" It was under {name}.", f" Name: {name}.", f" Thanks, {name}"])
    return text, {"intent": "cancel", "items": chosen, "name": name, "address": None, "time": time}


def complaint(rng):
    chosen = items(rng, 2)
    name = rng.choice(NAMES) if rng.random() < 0.6 else None
    addr = address(rng) if rng.random() < 0.5 else None
    problem = rng.choice(["arrived cold", "was missing from the bag", "came an hour late",
                          "was burnt", "was the wrong size", "was squashed"])
    plural = len(chosen) > 1 or chosen[0]["qty"] > 1
    many = problem.replace("was ", "were ", 1) if plural else problem
    text = rng.choice([f"The {say_items(rng, chosen)} I got {many}.",
                       f"Not happy: {say_items(rng, chosen)} {many}.",
                       f"My order ({say_items(rng, chosen)}) {problem}!"])
    if addr:
        text += f" Delivered to {addr}."
    if name:
        text += rng.choice([f" {name}", f" - {name}", f" Regards, {name}."])
    return text, {"intent": "complaint", "items": chosen, "name": name, "address": addr, "time": None}


def question(rng):
    template, mentions = rng.choice(QUESTIONS)
    pizza, side, street = rng.choice(PIZZAS), rng.choice(SIDES), rng.choice(STREETS)
    text = template.format(pizza=pizza, side=side, street=street)
    chosen = []
    if "pizza" in mentions:
        chosen = [{"item": f"{pizza} pizza", "qty": 1}]
    if "side" in mentions:
        chosen = [{"item": side, "qty": 1}]
    name = rng.choice(NAMES) if rng.random() < 0.3 else None
    if name:
        text = rng.choice([f"Hi, {name} here. ", f"Hello, this is {name}. "]) + text
    return text, {"intent": "question", "items": chosen, "name": name, "address": None, "time": None}


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check(text):
    """Problems with a model's answer: empty when it is one line of JSON with the schema."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    if not isinstance(value, dict) or list(value) != KEYS:
        return [f"keys must be exactly {KEYS} in that order"]
    problems = []
    if value["intent"] not in INTENTS:
        problems.append(f"intent must be one of {INTENTS}")
    if not isinstance(value["items"], list) or not all(
            isinstance(i, dict) and list(i) == ["item", "qty"] and isinstance(i["qty"], int)
            for i in value["items"]):
        problems.append('items must be a list of {"item": text, "qty": integer}')
    for key in ["name", "address", "time"]:
        if value[key] is not None and not isinstance(value[key], str):
            problems.append(f"{key} must be text or null")
    return problems


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        problems = check(sys.argv[2])
        print("\n".join(problems) or "ok")
        sys.exit(1 if problems else 0)
    rng = random.Random(SEED)
    makers = [order, order, cancel, complaint, question]
    seen = set()

    def examples(count, extra):
        lines = []
        while len(lines) < count:
            text, answer = rng.choice(makers)(rng)
            if text in seen:
                continue
            seen.add(text)
            assert not check(compact(answer)), answer
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text},
                        {"role": "assistant", "content": compact(answer)}]
            lines.append(compact({"messages": messages, **extra}))
        return lines

    # The evaluation rows come after the training rows from the same generator, so neither
    # file changes the other and no message is in both.
    for name, count, extra in [("train.jsonl", COUNT, {}),
                               ("eval.jsonl", EVAL_COUNT, {"json": True, "regex": SHAPE})]:
        lines = examples(count, extra)
        out = Path(__file__).with_name(name)
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(lines)} examples to {out}")


if __name__ == "__main__":
    main()
