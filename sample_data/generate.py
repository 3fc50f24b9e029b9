"""Regenerates the shipped sample corpus: `python sample_data/generate.py`.

Three small synthetic sources, deterministic (seeded), nothing downloaded:
  stories.txt   short tales, documents separated by blank lines
  recipes.jsonl one recipe per line, {"text": ...}
  code.jsonl    small Python functions, {"text": ...}
Regular enough that a tiny GPT's loss falls within a hundred steps, varied enough in
length and source that per-source figures and stratified sampling have something to show.
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
NAMES = ["Ada", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kira", "Lev"]
PLACES = ["the harbour", "a quiet village", "the old mill", "the northern hills", "a busy market",
          "the river bank", "a small library", "the lighthouse", "the forest edge", "the train station"]
THINGS = ["a lantern", "a map", "a red kite", "a wooden box", "a letter", "a silver key", "a basket of apples",
          "a broken clock", "a blue umbrella", "a notebook"]
FEELINGS = ["happy", "curious", "tired", "worried", "proud", "surprised", "calm", "excited"]
ACTIONS = ["walked to", "ran towards", "looked around", "waited near", "sang a song at", "searched", "cleaned",
           "painted a picture of"]
INGREDIENTS = ["flour", "sugar", "butter", "eggs", "milk", "salt", "onions", "garlic", "tomatoes", "rice",
               "carrots", "lentils", "olive oil", "lemon", "honey", "cheese"]
STEPS = ["Mix the {a} with the {b}.", "Heat the {a} for {n} minutes.", "Chop the {a} finely.",
         "Add the {a} and stir gently.", "Let the {a} rest for {n} minutes.", "Season with {a} to taste.",
         "Bake until golden, about {n} minutes.", "Serve warm with {a}."]
VERBS = ["total", "count", "scale", "merge", "clip", "average", "filter", "shift"]


def story(rng: random.Random) -> str:
    who, other = rng.sample(NAMES, 2)
    place, thing = rng.choice(PLACES), rng.choice(THINGS)
    lines = [f"{who} lived near {place}."]
    for _ in range(rng.randint(2, 12)):
        lines.append(rng.choice([
            f"One morning {who} {rng.choice(ACTIONS)} {rng.choice(PLACES)}.",
            f"{other} brought {rng.choice(THINGS)} and felt {rng.choice(FEELINGS)}.",
            f"{who} found {thing} and was {rng.choice(FEELINGS)}.",
            f"They talked about {rng.choice(THINGS)} until the evening.",
            f"{other} {rng.choice(ACTIONS)} {place} with {who}.",
        ]))
    lines.append(f"In the end {who} and {other} were {rng.choice(FEELINGS)}.")
    return " ".join(lines)


def recipe(rng: random.Random) -> str:
    items = rng.sample(INGREDIENTS, rng.randint(3, 7))
    steps = [rng.choice(STEPS).format(a=rng.choice(items), b=rng.choice(items), n=rng.randint(2, 40))
             for _ in range(rng.randint(2, 8))]
    title = f"{rng.choice(['Simple', 'Quick', 'Sunday', 'Winter', 'Summer'])} {items[0]} with {items[1]}"
    return f"{title}\nIngredients: {', '.join(items)}.\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(steps))


def function(rng: random.Random) -> str:
    verb, n = rng.choice(VERBS), rng.randint(1, 9)
    body = {
        "total": "    result = 0\n    for x in values:\n        result += x\n    return result",
        "count": "    return sum(1 for x in values if x > {n})",
        "scale": "    return [x * {n} for x in values]",
        "merge": "    out = list(values)\n    out.extend(other)\n    return sorted(out)",
        "clip": "    return [min(max(x, -{n}), {n}) for x in values]",
        "average": "    if not values:\n        return 0.0\n    return sum(values) / len(values)",
        "filter": "    return [x for x in values if x % {n} == 0]",
        "shift": "    return [x + {n} for x in values]",
    }[verb].format(n=n)
    args = "values, other" if verb == "merge" else "values"
    return f"def {verb}_{rng.choice(['items', 'numbers', 'scores', 'rows'])}({args}):\n    \"\"\"{verb.capitalize()} the values.\"\"\"\n{body}\n"


def main() -> None:
    rng = random.Random(20240519)
    (HERE / "stories.txt").write_text("\n\n".join(story(rng) for _ in range(500)) + "\n")
    with open(HERE / "recipes.jsonl", "w") as f:
        for _ in range(400):
            f.write(json.dumps({"text": recipe(rng)}) + "\n")
    with open(HERE / "code.jsonl", "w") as f:
        for _ in range(400):
            f.write(json.dumps({"text": function(rng)}) + "\n")


if __name__ == "__main__":
    main()
