"""The inherent risk tier, computed from a questionnaire's answers by a published scorecard.

The scorecard's rules are data (``Scorecard.rules``, seeded from PRODUCT.md and edited by risk
officers); this module only reads them:

- ``materiality`` and ``complexity``: questions, each ``{"label", "options": {answer: points}}``;
  a dimension's score is the sum of its answers' points.
- ``materiality_bands`` / ``complexity_bands``: ascending lower bounds; a score's band is how
  many bounds it reaches (so ``[4, 7, 10]`` makes 0-3 band 0 and 10-12 band 3).
- ``matrix``: the tier for each materiality band (rows) and complexity band (columns).
- ``floors``: a flag → the least critical tier a model with that flag may have (1 is the most
  critical), so regulatory-capital use → 1 whatever the scores say.
- ``prohibited_flags``: flags that make the model a prohibited practice, never to be approved.
- ``override_stages``: who decides a tier override (stages as in an approval policy).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from common.errors import ValidationFailed

DIMENSIONS = ("materiality", "complexity")


@dataclass(frozen=True)
class Tiering:
    materiality: int
    complexity: int
    matrix_tier: int
    tier: int
    prohibited: bool
    rationale: dict[str, Any]


def questions(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every question of the scorecard, by name."""
    return {name: question for dimension in DIMENSIONS for name, question in rules[dimension].items()}


def known_flags(rules: dict[str, Any]) -> list[str]:
    return sorted({*rules["floors"], *rules["prohibited_flags"]})


def assess(rules: dict[str, Any], answers: Any, flags: Any) -> Tiering:
    """Score ``answers`` (question → chosen option) and ``flags`` under ``rules``. Bad input is
    a 400 naming the question or flag and what it may be."""
    if not isinstance(answers, dict):
        raise ValidationFailed.on("answers", "must be an object of question → answer")
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        raise ValidationFailed.on("flags", "must be a list of flag names")
    asked = questions(rules)
    unknown = sorted(set(answers) - set(asked))
    if unknown:
        raise ValidationFailed.on(f"answers.{unknown[0]}", f"not a question of this scorecard ({', '.join(asked)})")
    points: dict[str, int] = {}
    for name, question in asked.items():
        answer = answers.get(name)
        if answer not in question["options"]:
            options = ", ".join(question["options"])
            raise ValidationFailed.on(f"answers.{name}", f"answer with one of: {options}")
        points[name] = question["options"][answer]
    bad_flags = sorted(set(flags) - set(known_flags(rules)))
    if bad_flags:
        raise ValidationFailed.on("flags", f"unknown flag {bad_flags[0]!r} (known: {', '.join(known_flags(rules))})")

    scores = {dimension: sum(points[name] for name in rules[dimension]) for dimension in DIMENSIONS}
    bands = {dimension: bisect_right(rules[f"{dimension}_bands"], scores[dimension]) for dimension in DIMENSIONS}
    matrix_tier = rules["matrix"][bands["materiality"]][bands["complexity"]]
    floors = {flag: rules["floors"][flag] for flag in sorted(set(flags)) if flag in rules["floors"]}
    tier = min([matrix_tier, *floors.values()])
    prohibited = sorted(set(flags) & set(rules["prohibited_flags"]))
    return Tiering(
        materiality=scores["materiality"],
        complexity=scores["complexity"],
        matrix_tier=matrix_tier,
        tier=tier,
        prohibited=bool(prohibited),
        rationale={
            "points": points,
            "scores": scores,
            "bands": bands,
            "matrix_tier": matrix_tier,
            "floors_applied": {flag: floor for flag, floor in floors.items() if floor < matrix_tier},
            "prohibited_flags": prohibited,
            "tier": tier,
        },
    )


def explain(rationale: dict[str, Any]) -> str:
    """The rationale in one sentence, for people."""
    scores, bands = rationale["scores"], rationale["bands"]
    text = (
        f"Materiality {scores['materiality']} (band {bands['materiality']}) and complexity "
        f"{scores['complexity']} (band {bands['complexity']}) gives T{rationale['matrix_tier']}"
    )
    floors = rationale["floors_applied"]
    if floors:
        text += "; raised to T{} by the floor for {}".format(rationale["tier"], ", ".join(floors))
    if rationale["prohibited_flags"]:
        text += "; a prohibited practice ({}): it can never be approved".format(
            ", ".join(rationale["prohibited_flags"])
        )
    return text + "."
