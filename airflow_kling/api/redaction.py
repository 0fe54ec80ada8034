"""Signed URLs are credentials: their query strings never reach a log, a message or an XCom."""

from __future__ import annotations

import logging
import re

from typing_extensions import override

_QUERY = re.compile(r"\?[^\s'\"<>]*")
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")
"""Loggers of the HTTP library under ``requests`` that write request lines, query strings included."""


class DropQueryStrings(logging.Filter):
    """Rewrites a record's message with every query string cut out (``?...`` up to a space or a quote)."""

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<redacted>", message), None
        return True


_FILTER = DropQueryStrings()


def redact_http_library_logs() -> None:
    """Make urllib3's debug and retry lines safe for signed URLs; idempotent."""
    for name in URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
