"""The enhanced photos of an album in one zip."""

import re
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import OwnedAlbum, SessionDep, StorageDep
from api.schemas import ErrorOut
from core.errors import NotFound
from services.results_zip import result_files, write_zip

router = APIRouter(prefix="/albums", tags=["albums"])

_CHUNK = 256 * 1024


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
    },
)
async def download_results(album: OwnedAlbum, session: SessionDep, storage: StorageDep) -> StreamingResponse:
    """Every enhanced image of the album, the newest result of each, named after its original and tier."""
    files = await anyio.to_thread.run_sync(result_files, session, album.id)
    if not files:
        raise NotFound("No enhanced images in this album yet")
    archive = await anyio.to_thread.run_sync(write_zip, storage, files)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await anyio.to_thread.run_sync(archive.read, _CHUNK):
                yield chunk
        finally:
            archive.close()

    name = re.sub(r"[^A-Za-z0-9_-]+", "-", album.name).strip("-")[:80] or "album"
    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}-enhanced.zip"'},
    )
