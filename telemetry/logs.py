"""Logs: plain text for a terminal, or one JSON object per line for a log pipeline, with the ids a record carries
(batch_id, job_id, user_id, album_id) and the trace it belongs to."""

import json
import logging
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace

IDS = ("batch_id", "job_id", "user_id", "album_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: getattr(record, key) for key in IDS if getattr(record, key, None) is not None})
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: Literal["text", "json"]) -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # Alembic says at INFO what every start-up and CLI command does anyway (the migration context, each revision
    # run); `album-enhance db upgrade` prints the revision reached. Its warnings and errors still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)
