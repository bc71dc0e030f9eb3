"""The positive class of a binary target, from the question: "is bad", "will quit", "denied" name the level asked about.

The target's two levels come from its profile (`planner.profile`). A level the prompt spells out wins ("predict
whether a loan Status is bad" -> `bad`, even where `good` is the majority); else a level in the same concept group as
a prompt word ("which employees will quit" -> `Left`, "who leaves" -> `Attrited Customer`); else the training
skills' own default (`skills.frame.positive_level`: yes/true/1/churn..., else the last level). Yes/no levels always
take the default: "yes" in a prompt is not a choice of class.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planner.catalog import CONCEPTS, words
from skills.frame import positive_level, target_level

# Concept groups of outcome levels beyond the planner's target concepts (planner.catalog.CONCEPTS).
_LEVEL_CONCEPTS: dict[str, frozenset[str]] = {name: frozenset(ws.split()) for name, ws in {
    "bad": "bad poor risky risk fail fails failed failure failing default defaulted defaults delinquent late",
    "denied": "deny denies denied denial reject rejects rejected rejection decline declines declined refuse "
              "refused refusal",
    "approved": "approve approves approved approval accept accepts accepted acceptance grant granted",
    "sick": "sick ill disease diseased positive malignant infected",
}.items()}
_CONCEPT_OF = {w: name for groups in (CONCEPTS, _LEVEL_CONCEPTS) for name, ws in groups.items() for w in ws}
_YES_NO = frozenset({"yes", "no", "y", "n", "true", "false", "t", "f", "0", "1", "1.0", "0.0"})
_COPULAS = frozenset({"is", "are", "be", "been", "being", "was", "were", "will", "would", "become", "becomes", "get",
                      "gets", "turn", "turns", "end", "ends", "as"})


@dataclass(frozen=True)
class Positive:
    """The positive level (as `skills.frame.target_level` text) and how it was chosen."""

    level: str
    how: str  # "named in the question", "meant by the question", "default"


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "d"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _named(level: str, said: tuple[str, ...]) -> int | None:
    """Where the prompt spells out every word of `level` (plurals and -ed/-ing aside), or None."""
    lw = words(level)
    stems = [_stem(w) for w in said]
    for i in range(len(said) - len(lw) + 1):
        if all(stems[i + j] == _stem(w) for j, w in enumerate(lw)):
            return i
    return None


def _meant(level: str, said: tuple[str, ...]) -> bool:
    concepts = {_CONCEPT_OF[w] for w in said if w in _CONCEPT_OF}
    return any(_CONCEPT_OF.get(w) in concepts for w in words(level))


def positive_class(prompt: str, levels: Sequence[str]) -> Positive | None:
    """The positive level of a target with these two `levels` for this question; None unless there are two."""
    levels = list(dict.fromkeys(levels))
    if len(levels) != 2:
        return None
    default = positive_level([target_level(lv) for lv in levels])
    if {target_level(lv) for lv in levels} & _YES_NO:
        return Positive(default, "default")
    said = words(prompt)
    named = {lv: at for lv in levels if (at := _named(lv, said)) is not None}
    if len(named) > 1:  # "will it be good or bad": the level after "is", "will", "be"...; else undecided
        named = {lv: at for lv, at in named.items() if at and said[at - 1] in _COPULAS}
        if len(named) != 1:
            return Positive(default, "default")
    if len(named) == 1:
        return Positive(target_level(next(iter(named))), "named in the question")
    meant = [lv for lv in levels if _meant(lv, said)]
    if len(meant) == 1:
        return Positive(target_level(meant[0]), "meant by the question")
    return Positive(default, "default")
