"""Original images."""

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import OwnedImage, StorageDep
from api.schemas import ErrorOut
from core.errors import NotFound

router = APIRouter(prefix="/images", tags=["images"])

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
}


@router.get(
    "/{imageId}/original",
    response_class=FileResponse,
    responses={
        200: {"content": {mt: {} for mt in sorted(set(MEDIA_TYPES.values()))}},
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
    },
)
def read_original(image: OwnedImage, storage: StorageDep) -> FileResponse:
    """Stream the uploaded original."""
    path = storage.path_for(image.original_key)
    if not path.is_file():
        raise NotFound("Original image not found in storage")
    return FileResponse(path, media_type=MEDIA_TYPES.get(image.format, "application/octet-stream"))
