"""SMS part counting exactly as Instasent counts and splits (sms-counter-php, split-sms).

GSM 03.38 text is 160 characters in one part, 153 per part once concatenated; extension-table
characters (form feed, ``[ \\ ] ^ { | } ~ €``) count 2. Any other character switches the whole text
to UTF-16: 70 units in one part, 67 per part once concatenated, and a code point above U+FFFF
counts 2. Parts are split greedily and an escape pair or a surrogate pair never straddles two
parts, so a long text full of double characters can need one part more than ``ceil(length / 153)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM_7BIT", "GSM_7BIT_EX", "UTF16"]

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"

#: Characters per part: (single, concatenated).
GSM_LIMITS = (160, 153)
UTF16_LIMITS = (70, 67)

_NOT_GSM = re.compile("[^" + re.escape(GSM_BASIC + GSM_EXTENSION) + "]")
_GSM_EXT = re.compile("[" + re.escape(GSM_EXTENSION) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Segments:
    """How Instasent sees one text.

    ``length`` is in GSM septets or UTF-16 units (double characters count 2); ``parts`` is the number
    of SMS billed; ``per_part`` is the capacity of each part in the same unit.
    """

    encoding: Encoding
    length: int
    parts: int
    per_part: int

    @property
    def needs_unicode(self) -> bool:
        """True when the text must be sent with ``allowUnicode``."""
        return self.encoding == "UTF16"


def is_gsm(text: str) -> bool:
    """Return True when every character of ``text`` is in the GSM 03.38 basic or extension table."""
    return _NOT_GSM.search(text) is None


def count_segments(text: str) -> Segments:
    """Count the encoding, length and parts of ``text`` as Instasent does.

    An empty text is one part of length 0.
    """
    if _NOT_GSM.search(text) is None:
        doubles = len(_GSM_EXT.findall(text))
        encoding: Encoding = "GSM_7BIT_EX" if doubles else "GSM_7BIT"
        single, multi = GSM_LIMITS
        pattern = _GSM_EXT
    else:
        doubles = len(_ASTRAL.findall(text))
        encoding = "UTF16"
        single, multi = UTF16_LIMITS
        pattern = _ASTRAL
    length = len(text) + doubles
    if length <= single:
        return Segments(encoding, length, 1, single)
    if not doubles:
        return Segments(encoding, length, -(-length // multi), multi)
    return Segments(encoding, length, _split_count(text, pattern, multi), multi)


def _split_count(text: str, doubles: re.Pattern[str], per_part: int) -> int:
    """Count parts by greedy splitting where a double character never straddles two parts."""
    parts, used = 1, 0
    for char in text:
        size = 2 if doubles.match(char) else 1
        if used + size > per_part:
            parts += 1
            used = 0
        used += size
    return parts
