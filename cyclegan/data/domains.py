"""The two image domains (A, B) and the translation directions between them, named once for data,
inference and the commands."""

from __future__ import annotations

# direction -> (source domain, target domain)
DOMAINS = {"AtoB": ("A", "B"), "BtoA": ("B", "A")}
DIRECTIONS: tuple[str, ...] = tuple(DOMAINS)
