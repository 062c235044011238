#!/usr/bin/env python3
"""Writes examples/zog.jsonl: short stories whose hero is always a dragon
named Zog. stories260K (trained on TinyStories) never writes about Zog, so the
dataset teaches it something measurable: after finetuning, "Once upon a time"
continues with Zog far more often than the base model ever does.

Deterministic (fixed seed), so the committed file can be regenerated."""
import json, random

rng = random.Random(7)
places = ["in a big cave", "on a tall hill", "near a small town", "in a green forest",
          "by a blue lake", "behind a big mountain", "in a warm cave", "near the sea"]
colors = ["green", "red", "purple", "blue", "little", "kind", "happy", "friendly"]
likes = ["fly in the sky", "play with his friends", "eat red apples", "sing songs",
         "help the children", "look at the stars", "build sand castles", "read books"]
events = ["one day, Zog saw a little bird who was sad",
          "one day, Zog found a shiny box",
          "one day, Zog met a girl named Lily",
          "one day, Zog lost his favorite ball",
          "one day, the town was very cold",
          "one day, Zog saw a boy who could not find his mom",
          "one day, Zog wanted to make a new friend",
          "one day, a big storm came"]
endings = ["Zog helped and everyone was happy.",
           "Zog smiled and they played all day.",
           "Zog was proud and the town said thank you.",
           "Zog and his new friend had a fun day.",
           "Zog breathed warm air and everyone was warm.",
           "Zog flew home and went to sleep."]

rows = set()
while len(rows) < 240:
    s = (f", there was a {rng.choice(colors)} dragon named Zog. Zog lived {rng.choice(places)}. "
         f"He liked to {rng.choice(likes)}. {(lambda e: e[0].upper() + e[1:])(rng.choice(events))}. "
         f"{rng.choice(endings)}")
    rows.add(s)
with open("examples/zog.jsonl", "w") as f:
    for s in sorted(rows, key=lambda _: rng.random()):
        f.write(json.dumps({"prompt": "Once upon a time", "completion": s}) + "\n")
