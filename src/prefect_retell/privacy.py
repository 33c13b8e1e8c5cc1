"""Keeping phone numbers out of log lines.

Log lines show only the last four digits of a number unless the user turns full
numbers on with `PREFECT_RETELL_LOG_FULL_NUMBERS=true`. Results that the user asked
for (the campaign's return value and `--results` file) keep full numbers.
"""

from __future__ import annotations

import os
import re

__all__ = ["mask_phone_number", "redact_phone_numbers"]

_TRUE = {"1", "true", "yes", "on"}
# A run of digits (with separators) that stands alone: digits inside an id such as
# call_0d2f0e55c9962fb909dd64541747 are not a phone number.
_NUMBER = re.compile(r"(?<![\w+])\+?\d[\d\s().-]{6,}\d(?!\w)")


def _show_full_numbers() -> bool:
    return os.environ.get("PREFECT_RETELL_LOG_FULL_NUMBERS", "").lower() in _TRUE


def mask_phone_number(number: str | None, *, always: bool = False) -> str:
    """Mask all but the last four digits of a phone number.

    Args:
        number: The number, in any form.
        always: Mask even when full numbers are turned on for log lines; for
            artifacts, which Prefect stores and shows.

    Example:
        >>> mask_phone_number("+14155550123")
        '+*******0123'
    """
    if not number:
        return "<none>"
    if _show_full_numbers() and not always:
        return number
    digits = [ch for ch in number if ch.isdigit()]
    hidden = max(len(digits) - 4, 0)
    prefix = "+" if number.startswith("+") else ""
    return prefix + "*" * hidden + "".join(digits[hidden:])


def redact_phone_numbers(text: str) -> str:
    """Mask every phone-number-like run of digits in free text, such as a message."""
    if _show_full_numbers():
        return text
    return _NUMBER.sub(lambda match: mask_phone_number(match.group(0)), text)
