"""Logging set-up for the CLI: context in every line, credentials never."""

from __future__ import annotations

import json
import logging
import re
import sys

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")
_SECRET_PARAM = re.compile(r"(?i)\b(password|passwd|pwd|token|secret)=([^&\s]+)")


def redact(text: str) -> str:
    """``text`` with URL credentials and secret query parameters replaced by ``***``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _SECRET_PARAM.sub(r"\1=***", text)


class RedactingFilter(logging.Filter):
    """Formats each record's message once, redacted, so no handler sees a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("camera", "restaurant"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data)


def configure(level: str, fmt: str) -> None:
    """Send every log record to stderr, redacted, as text or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(max(logging.getLevelName(level), logging.INFO))
    # aioice and aiortc narrate every ICE check at INFO; keep their warnings only.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
