"""Sensitive-word matching for member content: pure, no database.

Members dodge word lists with spacing, punctuation, full-width letters and case ("傻 逼",
"Ｆｕｃｋ", "f.u.c.k"). Both the words and the text are normalised the same way before
matching: Unicode NFKC (full-width → half-width), case folded, and every character that is not
a letter or a digit (spaces, punctuation, symbols, zero-width characters) dropped. A word then
matches wherever its normalised form appears in the normalised text.

Normalising away the gaps means a short Latin word can match across word boundaries ("ass" in
"a glass"); staff keep Latin entries long enough to be specific. Chinese has no word
boundaries anyway, so substring matching is what a human moderator would do too.
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Longer entries are cut to this many normalised characters.
MAX_WORD_LENGTH = 100


def normalize(text: str) -> str:
    """The form both words and texts are compared in (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(char for char in folded if char.isalnum())


@dataclass(frozen=True)
class Matcher:
    """Finds which of a list of words occur in a text. Build it once per word list."""

    pattern: re.Pattern | None
    words_by_form: dict[str, str]

    def find(self, text: str) -> list[str]:
        """The words (as staff wrote them) found in `text`, each once, in order of first appearance."""
        if self.pattern is None or not text:
            return []
        found: dict[str, None] = {}
        for match in self.pattern.finditer(normalize(text)):
            found.setdefault(self.words_by_form[match.group(1)], None)
        return list(found)


def compile_matcher(words: Iterable[str]) -> Matcher:
    """A matcher for these words; words that normalise to nothing (only spaces or punctuation) are ignored."""
    words_by_form: dict[str, str] = {}
    for word in words:
        form = normalize(word)[:MAX_WORD_LENGTH]
        if form:
            words_by_form.setdefault(form, word.strip())
    if not words_by_form:
        return Matcher(pattern=None, words_by_form={})
    # Longest first: of two entries starting at the same place, the more specific one is reported.
    # The lookahead lets occurrences that overlap (starting at different places) all be found.
    alternatives = sorted(words_by_form, key=lambda form: (-len(form), form))
    pattern = re.compile("(?=(" + "|".join(map(re.escape, alternatives)) + "))")
    return Matcher(pattern=pattern, words_by_form=words_by_form)
