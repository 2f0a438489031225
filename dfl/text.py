"""Words for the summary lines users read: counts in correct English, in one place."""

from __future__ import annotations


def plural(n: int, word: str, plural_form: str | None = None) -> str:
    """``plural(1, "face")`` -> ``"1 face"``, ``plural(2, "face")`` -> ``"2 faces"``, ``plural(0, "face")`` ->
    ``"0 faces"``.

    Why one helper: a summary line is the only record most users keep of what a step did, and "1 faces" or
    "face(s)" reads as careless.  ``plural_form`` is for words that do not just take an ``s`` ("matches",
    "were"); nouns ending in s, x, ch or sh take ``es``, a consonant and y takes ``ies``.
    """
    if n == 1:
        return f"{n} {word}"
    if plural_form is None:
        if word.endswith(("s", "x", "ch", "sh")):
            plural_form = word + "es"
        elif word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
            plural_form = word[:-1] + "ies"
        else:
            plural_form = word + "s"
    return f"{n} {plural_form}"
