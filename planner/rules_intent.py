"""What a prompt asks for besides its target: task, tuning effort, features, baseline, scoring, numbers.

Pure functions of the prompt text (no catalog): the rule-based planner combines them with the catalog.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Task = Literal["classification", "regression"]

_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty".split())} | {"thirty": 30, "forty": 40, "fifty": 50, "hundred": 100}
_NUM = r"(\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_DAYS = {"day": 1, "week": 7, "month": 30, "quarter": 90, "year": 365}


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _NUMBER_WORDS[token.lower()]


def _find(pattern: str, text: str) -> re.Match[str] | None:
    return re.search(pattern, text, re.IGNORECASE)


def _has(pattern: str, text: str) -> bool:
    return _find(pattern, text) is not None


@dataclass(frozen=True)
class Intent:
    """Everything the wording says about the plan; None means "not said, use the default"."""

    task: Task | None = None             # said outright: "classifier", "regression"
    leaning: Task | None = None          # suggested: "probability", "how much", "forecast"
    tune: bool = True
    num_trials: int | None = None
    rounds: int | None = None
    time_budget_s: float | None = None
    search: str | None = None
    scheduler: str | None = None
    folds: int | None = None
    top_k: int | None = None
    features: frozenset[str] = field(default_factory=frozenset)  # lag/window/trend/ratio/difference/auto/none
    window_days: int | None = None
    lag_periods: int | None = None
    baseline: bool = False
    score: bool = False                  # score the new rows of another table ("then score the new customers")
    score_target: bool = False           # score the target table's own rows ("which customers will churn next month")
    cutoff: str | None = None


_CLASS_WORDS = r"(species|segments?|categor(?:y|ies)|types?|class(?:es)?|kinds?|groups?|tiers?|grades?|labels?|" \
    r"genre|breed|varieties|variety|brands?|departments?|cluster)"


def _task(text: str) -> tuple[Task | None, Task | None]:
    said: Task | None = None
    if _has(r"\b(classif\w*|binary|multi-?class|multinomial)\b", text):
        said = "classification"
    elif _has(r"\b(regress\w*)\b", text):
        said = "regression"
    leaning: Task | None = None
    if _has(r"\b(probabilit\w*|likelihood|likely|whether|chances?|odds|who will|which \w+ will|at risk|risk of)\b",
            text) or _has(rf"\b(which|what)\s+(\w+\s+)?{_CLASS_WORDS}\b", text):  # "which species", "what type"
        leaning = "classification"
    elif _has(r"\b(how much|how many|forecast\w*|estimate\w*|amount of|value of|expected)\b", text):
        leaning = "regression"
    return said, leaning


def _tuning(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    no_tune = r"\b(quick\w*|fast|rough\w*|simple|no tuning|without tuning|skip tuning|don'?t tune|do not tune|" \
              r"baseline only|just a baseline|only a baseline|untuned)\b"
    trials = _find(rf"\b{_NUM}\s+(?:tuning\s+|hyperparameter\s+|search\s+)?(?:trials?|configurations?|configs?)\b",
                   text)
    if trials:
        out["num_trials"] = _number(trials.group(1))
    elif _has(r"\b(thorough\w*|extensive\w*|exhaustive\w*|best possible|as good as possible)\b", text):
        out["num_trials"] = 32
    out["tune"] = bool(trials) or not _has(no_tune, text)
    if rounds := _find(rf"\b{_NUM}\s+(?:boosting\s+)?(?:rounds?|iterations?|trees?)\b", text):
        out["rounds"] = _number(rounds.group(1))
    limit = _find(r"\b(?:within|in|under|at most|max(?:imum)?|budget of|limit of)\s+(\d+)\s*"
                  r"(s|secs?|seconds?|m|mins?|minutes?|h|hours?)\b", text)
    if limit:
        unit = limit.group(2).lower()[0]
        out["time_budget_s"] = float(int(limit.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit])
    out["search"] = "random" if _has(r"\brandom search\b", text) else "hyperopt" if _has(r"\bhyperopt\b", text) \
        else "optuna" if _has(r"\b(optuna|bayesian|tpe)\b", text) else None
    out["scheduler"] = "fifo" if _has(r"\b(fifo|no early stopping|without early stopping)\b", text) \
        else "asha" if _has(r"\b(asha|early stopping|successive halving)\b", text) else None
    return out


def _windows(text: str) -> tuple[int | None, int | None]:
    window = _find(rf"\b(?:last|past|rolling|over|trailing|previous)\s+{_NUM}?\s*-?\s*"
                   r"(day|week|month|quarter|year)s?\b", text) \
        or _find(rf"\b{_NUM}\s*-?\s*(day|week|month|quarter|year)s?\s+(?:window|rolling|average|avg|mean|sum)",
                 text)
    days = None
    if window:
        count = _number(window.group(1)) if window.group(1) else 1
        days = count * _DAYS[window.group(2).lower()]
    lag = _find(rf"\blag(?:ged)?\s*(?:of\s+)?{_NUM}\b", text) \
        or _find(rf"\b{_NUM}\s+(?:month|period|step|row)s?\s+(?:lag|ago|before)\b", text)
    return days, (_number(lag.group(1)) if lag else None)


def _features(text: str) -> frozenset[str]:
    if _has(r"\b(no|without)\s+(new\s+|extra\s+)?(features?|feature engineering)\b|\braw columns only\b", text):
        return frozenset({"none"})
    kinds = {
        "lag": r"\blag\w*\b|\b(previous|prior) (month|period|value)s?\b",
        "window": r"\b(rolling|moving|window\w*|average \w+ over|avg \w+ over|spend over|sum over)\b|"
                  r"\b(last|past|trailing) \d+\s*(day|week|month)s?\b",
        "trend": r"\btrends?\b|\btrending\b",
        "ratio": r"\bratios?\b|\bdivided by\b",
        "difference": r"\bdifferences?\b|\bminus\b|\bdelta\b",
        "auto": r"\b(features?|feature engineering|history|historical|related tables?|transactions?|behaviou?r)\b",
    }
    return frozenset(kind for kind, pattern in kinds.items() if _has(pattern, text))


# A question about which of today's rows will have the outcome asks for their scores, not only for a model: "which
# customers will churn next month", "who is likely to churn", "score today's customers". A request to build a model
# that happens to say "which" ("predict which card holders will default") is not one, unless it names a future period.
_ASKS_WHO = r"^\W*(?:(?:tell|show|give|list|find)\s+(?:me\s+|us\s+)?)?(?:which|who)\b.{0,60}?" \
            r"\b(?:will|would|is|are|might|may|going to)\b"
_LIKELY = r"\b(?:who|which\s+\w+(?:\s+\w+)?)\s+(?:is|are)\s+(?:the\s+)?(?:most\s+|more\s+|least\s+)?" \
          r"(?:likely|at risk|going to)\b"
_FUTURE = r"\b(?:which|who)\b.{0,80}?\b(?:next|coming|upcoming|following)\s+(?:\d+\s+)?" \
          r"(?:days?|weeks?|months?|quarters?|years?)\b"
_SCORE_NOW = r"\b(?:score|rank|flag)\s+(?:all\s+|the\s+|our\s+|my\s+)?(?:today'?s|current|existing|active|all|" \
             r"every|each)\b"


def _scores_target(text: str, scores_new: bool) -> bool:
    """The prompt asks which rows of the target table will have the outcome (train, then score them)."""
    if scores_new:
        return False  # the rows to score are another table's
    who = _has(_ASKS_WHO, text) and _has(r"\b(will|likely|going to|at risk|next)\b", text)
    return who or any(_has(p, text) for p in (_LIKELY, _FUTURE, _SCORE_NOW))


def parse_intent(prompt: str) -> Intent:
    """Read the prompt's wishes (task, tuning, features, baseline, scoring, numbers); never its target."""
    text = " ".join(prompt.split())
    said, leaning = _task(text)
    window_days, lag_periods = _windows(text)
    folds = _find(r"\b(\d+)\s*-?\s*folds?\b", text)
    top = _find(rf"\btop\s+{_NUM}\b", text)
    cutoff = _find(r"\b(\d{4}-\d{2}-\d{2})\b", text)
    baseline = _has(r"\b(baseline|benchmark|compare\w*\s+(?:it\s+|this\s+|them\s+)?(?:to|with|against)|versus|vs\.?)\b",
                    text) and not _has(r"\b(baseline only|just a baseline|only a baseline)\b", text)
    score = _has(r"\b(score|scoring|predictions? for|apply (?:it|the model) to)\b.{0,40}?"
                 r"\b(new|unlabell?ed|incoming|fresh|upcoming|pending|latest|current)\b", text)
    return Intent(
        task=said, leaning=leaning, folds=int(folds.group(1)) if folds else None,
        top_k=_number(top.group(1)) if top else None, features=_features(text), window_days=window_days,
        lag_periods=lag_periods, baseline=baseline, score=score, score_target=_scores_target(text, score),
        cutoff=cutoff.group(1) if cutoff else None,
        **_tuning(text),  # type: ignore[arg-type]
    )
