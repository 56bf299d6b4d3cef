#!/usr/bin/env python3
"""Writes corpus.txt: a few MB of plain English text for pretraining tests and demos.

Every document is generated here from small word lists and sentence patterns written for
Tunelab, with a fixed seed, so the file is reproducible and free of anyone else's text.
Documents are separated by blank lines (Tunelab reads one document per paragraph).
"""

import random
from pathlib import Path

random.seed(20261128)

TOWNS = ["Brackenford", "Eastmere", "Holloway Cross", "Lindqvist Bay", "Marrow Hill",
         "Northwick", "Oldcastle Reach", "Pennyfield", "Quarry End", "Saltmarsh",
         "Thistledown", "Upper Wend", "Vellmoor", "Westerbrook", "Yarrowdale"]
PEOPLE = ["Ada", "Bram", "Celia", "Dmitri", "Esme", "Farid", "Greta", "Hugo", "Ines",
          "Jonah", "Kaito", "Lena", "Milo", "Nadia", "Otto", "Priya", "Quinn", "Rosa",
          "Soren", "Tamsin", "Ugo", "Vera", "Wren", "Xavier", "Yusuf", "Zelda"]
TRADES = ["baker", "blacksmith", "ferry pilot", "beekeeper", "clockmaker", "librarian",
          "lighthouse keeper", "potter", "shepherd", "teacher", "weaver", "cartographer"]
GOODS = ["apples", "barley", "candles", "copper pots", "honey", "lanterns", "maps",
         "rope", "salt fish", "wool", "walnuts", "glass beads"]
WEATHER = ["clear and cold", "grey with light rain", "windy from the west", "warm and still",
           "foggy until noon", "stormy after dark", "bright with high cloud", "wet and mild"]
ANIMALS = ["heron", "fox", "badger", "otter", "owl", "hare", "kestrel", "stag"]
COLOURS = ["red", "blue", "green", "amber", "silver", "white", "black", "violet"]
VERBS = ["mended", "painted", "carried", "counted", "sold", "repaired", "found", "built"]
OBJECTS = ["the old bridge", "a fishing boat", "the mill wheel", "a stone wall",
           "the bell tower", "a wooden cart", "the harbour gate", "a garden shed"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def pick(items):
    return random.choice(items)


def town_entry():
    town, river = pick(TOWNS), pick(TOWNS).split()[0] + " River"
    pop = random.randint(300, 40000)
    goods = random.sample(GOODS, 3)
    return (f"{town} is a town on the {river} with about {pop:,} people. It is known for its "
            f"{goods[0]}, its {goods[1]} and a market every {pick(DAYS)} where traders sell "
            f"{goods[2]}. The oldest building is {pick(OBJECTS)}, which the {pick(TRADES)}s "
            f"{pick(VERBS)} in the year {random.randint(1200, 1900)}. Visitors arrive by "
            f"{pick(['road', 'ferry', 'train', 'canal boat'])}.")


def weather_log():
    town, month = pick(TOWNS), pick(MONTHS)
    lines = [f"Weather log for {town}, {month}."]
    for day in random.sample(range(1, 29), random.randint(3, 6)):
        t = random.randint(-5, 28)
        lines.append(f"On the {day}th the sky was {pick(WEATHER)}; the temperature reached "
                     f"{t} degrees and a {pick(ANIMALS)} was seen near {pick(OBJECTS)}.")
    return " ".join(lines)


def story():
    a, b = random.sample(PEOPLE, 2)
    trade, town = pick(TRADES), pick(TOWNS)
    colour, animal = pick(COLOURS), pick(ANIMALS)
    return (f"{a} was a {trade} in {town}. One {pick(DAYS).lower()} morning {a} found a "
            f"{colour} {animal} sleeping beside {pick(OBJECTS)}. {a} called {b}, who "
            f"{pick(VERBS)} {pick(OBJECTS)} for a living, and together they carried the "
            f"{animal} to the {pick(['river', 'forest', 'hill', 'harbour'])}. When the {animal} "
            f"woke it looked at them, and {b} said, \"I think it wants {pick(GOODS)}.\" "
            f"So {a} brought {pick(GOODS)} from the market, and the {animal} stayed in "
            f"{town} until {pick(MONTHS)}.")


def ledger():
    trader, town = pick(PEOPLE), pick(TOWNS)
    lines = [f"Ledger of {trader}, trader of {town}."]
    total = 0
    for _ in range(random.randint(3, 7)):
        qty, price = random.randint(1, 40), random.randint(2, 90)
        total += qty * price
        lines.append(f"Sold {qty} {pick(GOODS)} at {price} pence each: {qty * price} pence.")
    lines.append(f"Total for the week: {total} pence.")
    return " ".join(lines)


def recipe():
    dish = f"{pick(COLOURS)} {pick(['stew', 'pie', 'soup', 'loaf', 'pudding'])}"
    steps = [f"Take {random.randint(2, 6)} handfuls of {pick(GOODS)}.",
             f"Boil them for {random.randint(5, 50)} minutes.",
             f"Add a spoon of {pick(['honey', 'salt', 'butter', 'vinegar'])}.",
             f"Let it rest until {pick(['cool', 'warm', 'firm', 'golden'])}."]
    return f"How to make {dish} the {pick(TOWNS)} way. " + " ".join(steps) + " Serve at once."


KINDS = [town_entry, weather_log, story, ledger, recipe]

out = Path(__file__).with_name("corpus.txt")
docs, size = [], 0
while size < 3_000_000:
    doc = pick(KINDS)()
    docs.append(doc)
    size += len(doc) + 2
out.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
print(f"wrote {out} ({size:,} bytes, {len(docs):,} documents)")
