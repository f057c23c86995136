"""The enhanced photos of an album in one zip."""

import re

import anyio
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import OwnedAlbum, SessionDep, StorageDep
from api.schemas import ErrorOut
from core.errors import NotFound
from services.results_zip import result_files, zip_stream

router = APIRouter(prefix="/albums", tags=["albums"])


@router.get(
    "/{albumId}/results.zip",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "One image per enhanced image (its newest result), named with its format's extension",
        },
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        429: {"model": ErrorOut},
    },
)
async def download_results(album: OwnedAlbum, session: SessionDep, storage: StorageDep) -> StreamingResponse:
    """Every enhanced image of the album, the newest result of each, named after its original and tier. The
    archive is streamed as it is made; a result deleted meanwhile is left out and named in `MISSING.txt`
    inside it. One zip per user at a time (`ZIPS_PER_USER`): another is 429 until it ends."""
    files = await anyio.to_thread.run_sync(result_files, session, album.id)
    if not files:
        raise NotFound("No enhanced images in this album yet")
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", album.name).strip("-")[:80] or "album"
    return StreamingResponse(
        zip_stream(storage, files),  # a sync iterator: each chunk is read on a worker thread
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}-enhanced.zip"'},
    )
