"""A batch's live progress as Server-Sent Events."""

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from api.deps import EngineDep, OwnedBatch, SettingsDep
from api.schemas import ErrorOut
from api.state import app_state
from services.batch_events import event_stream

router = APIRouter(prefix="/batches", tags=["batches"])


EVENTS_DESCRIPTION = """\
`text/event-stream` of the batch's progress, read from the database (both execution modes):

* `event: job` — a job changed: `{"jobId", "imageId", "position", "status", "tokensRefunded", "errorMessage"}`
* `event: batch` — after any change: `{"batchId", "status", "totalImages", "completed", "failed", "cancelled",
  "pending", "tokensCharged", "tokensRefunded", "cancelRequested"}` (`cancelRequested`: a cancel was asked for;
  until the batch has ended it is still cancelling)
* `event: step` — an image in progress reached a new step (a long one, e.g. an enlargement tile by tile):
  `{"jobId", "imageId", "position", "step", "elapsedSeconds"}`, `step` as in the batch's jobs (e.g. `"tile 7 of
  48"`), `elapsedSeconds` since the image started, on the server's clock (for an estimate of what is left). Steps
  are momentary: a reconnecting client is told the current ones again.
* `event: end` — the batch is over and no job can change; the server then closes the stream.

The first events describe the whole batch. Every event has an `id`; reconnecting with `Last-Event-ID` sends only
what changed since that event. A stream is closed after `EVENTS_MAX_SECONDS` (a paused batch can wait for days;
a keep-alive comment is sent while nothing changes): reconnect with `Last-Event-ID`. Too many open streams of one
user are refused with 429. Authenticate with the `Authorization` header, as everywhere (a browser reads the
stream with `fetch()`, so the key never goes into a URL).
"""


# One event of the stream (OpenAPI 3.1 describes a text/event-stream by the schema of each event).
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data", "id"],
    "properties": {
        "event": {"type": "string", "enum": ["job", "batch", "step", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "description": "Send it back as Last-Event-ID to resume after this event"},
    },
}


@router.get(
    "/{batchId}/events",
    response_class=StreamingResponse,
    description=EVENTS_DESCRIPTION,
    responses={
        200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}}, "description": "The event stream"},
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
        429: {"model": ErrorOut},
    },
)
async def batch_events(
    request: Request,
    batch: OwnedBatch,
    engine: EngineDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
) -> StreamingResponse:
    """Stream a batch's job transitions and status until it ends."""
    stream = event_stream(
        engine,
        batch.id,
        last_event_id,
        settings.events_poll_seconds,
        settings.events_keepalive_seconds,
        settings.events_max_seconds,
        app_state(request.app).event_reads,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
