"""How the server's own log lines look on stderr: text for people, JSON for machines.

``nimbus up/serve --log-format json`` writes one JSON object per line (time, level,
logger, message, and the request id and function when the line is about an
invocation), so a log shipper can index them without parsing text. ``logging_config``
is the ``logging.config.dictConfig`` document Uvicorn applies in every worker.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
#: attributes of a record that ``extra=`` may add and a JSON line carries
_EXTRA = ("request_id", "function")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _EXTRA:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def logging_config(log_format: str = "text", level: str = "warning") -> dict[str, Any]:
    """Handlers for Uvicorn's loggers and Nimbus's (``nimbus.*`` at ``level``)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if log_format == "json":
        formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"}
        access: dict[str, Any] = formatter
    else:
        formatter = {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(name)s: %(message)s",
        }
        access = {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        }
    stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter, "access": access},
        "handlers": {
            "default": {**stderr, "formatter": "default"},
            "access": {**stderr, "formatter": "access"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "nimbus": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }
