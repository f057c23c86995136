"""Serving a stored object: a redirect to a short-lived presigned URL when the backend has one, else a stream."""

from typing import Any

from fastapi.responses import RedirectResponse, Response, StreamingResponse

from core.config import Settings
from core.errors import NotFound
from storage.base import ObjectNotFound, Storage

# Documented on the routes that serve objects.
REDIRECT_RESPONSE: dict[int | str, dict[str, Any]] = {
    307: {"description": "A short-lived presigned URL of the object (S3-compatible storage)"},
}


def serve_object(storage: Storage, key: str, media_type: str, settings: Settings, missing: str) -> Response:
    """The object under key (callers have checked ownership); NotFound(missing) when storage lacks it."""
    if settings.storage_presigned_urls:
        url = storage.presigned_url(key, settings.storage_presign_seconds, media_type)
        if url is not None:
            if not storage.exists(key):
                raise NotFound(missing)
            # The URL expires soon: neither the client nor a proxy may keep the redirect.
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})
    try:
        stored = storage.open(key)
    except ObjectNotFound as exc:
        raise NotFound(missing) from exc
    return StreamingResponse(stored.chunks, media_type=media_type, headers={"Content-Length": str(stored.size)})
