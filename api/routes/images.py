"""Original images."""

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import OwnedImage, SettingsDep, StorageDep
from api.downloads import REDIRECT_RESPONSE, serve_object
from api.schemas import ErrorOut

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
    response_class=Response,
    responses={
        200: {"content": {mt: {} for mt in sorted(set(MEDIA_TYPES.values()))}},
        **REDIRECT_RESPONSE,
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
    },
)
def read_original(image: OwnedImage, storage: StorageDep, settings: SettingsDep) -> Response:
    """The uploaded original (streamed, or a redirect to a presigned URL)."""
    media_type = MEDIA_TYPES.get(image.format, "application/octet-stream")
    return serve_object(storage, image.original_key, media_type, settings, "Original image not found in storage")
