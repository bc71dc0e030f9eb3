"""Spotting prompts that try to talk their way past governance.

Detection is only for the audit log: the prompt never reaches the principal, roles or policies, and every plan is
built from the principal's governed catalog and validated against it, so a flagged prompt is still planned normally
and still runs governed. The list is small on purpose (a flag, not a filter); false positives cost one audit line.
"""
from __future__ import annotations

import re

_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"\b(ignore|disregard|forget|override)\b(\s+\w+){0,3}\s+(rules?|instructions?|polic(y|ies)|governance|"
     r"restrictions?|guardrails?|permissions?|prompt)", "asks to ignore the rules"),
    (r"\b(disable|bypass|turn\s+off|switch\s+off|skip|circumvent|remove|get\s+around|lift)\b(\s+\w+){0,2}\s+"
     r"(governance|polic(y|ies)|rules?|masks?|masking|row\s+filters?|filters?|security|access\s+controls?|"
     r"restrictions?|audit)", "asks to disable governance"),
    (r"\bas\s+(an?\s+|the\s+)?(admin|administrator|root|superuser|super\s+user|dba|owner|sysadmin)\b",
     "claims another role"),
    (r"\b(i\s+am|i'm|im|act\s+as|pretend\s+(to\s+be|you\s+are)|you\s+are\s+now)\s+(an?\s+|the\s+)?"
     r"(admin|administrator|root|superuser|dba|developer\s+mode)\b", "claims another role"),
    (r"\b(grant|give|elevate|escalate)\s+(me|myself|yourself|us)?\s*(full\s+|admin\s+|more\s+)?"
     r"(access|permissions?|privileges?|roles?|admin)\b", "asks for more rights"),
    (r"\b(change|switch|set|use)\s+(my\s+|the\s+)?(role|principal|user|policy|policies)\b", "asks to change identity"),
    (r"\b(show|reveal|expose|include|give\s+me|list|dump|print|select|leak|return|read)\b(\s+\w+){0,3}\s+"
     r"(ssns?|social\s+security|passwords?|credit\s+cards?|card\s+numbers?|pii|personal\s+data|emails?|"
     r"phone\s+numbers?|addresses|salar(y|ies)|hidden|masked|denied|restricted|secret|unmasked|raw\s+emails?)\b",
     "asks for protected data"),
    (r"\b(unmask|unredact|de-?anonymi[sz]e|re-?identify)\b", "asks to unmask data"),
    (r"\b(all|every|other)\s+regions?\b|\bcross[- ]region\b", "asks for rows outside the row filter"),
    (r"\b(system\s+prompt|jailbreak|developer\s+mode|do\s+anything\s+now)\b", "prompt-injection phrasing"),
)
_COMPILED = tuple((re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in _PATTERNS)


def flag_injection(prompt: str) -> str | None:
    """A short reason when `prompt` looks like an attempt to bypass governance, else None.

    The reason quotes the matching words of the prompt (the user's own text, never data values)."""
    for pattern, reason in _COMPILED:
        match = pattern.search(prompt)
        if match:
            return f"prompt flagged: {reason} ({match.group(0).strip()[:80]!r})"
    return None
