"""Enhancement jobs and their results."""

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import OwnedJob, SettingsDep, StorageDep
from api.downloads import REDIRECT_RESPONSE, serve_object
from api.schemas import ErrorOut, JobOut
from core.errors import NotFound
from core.vocabulary import RESULT_MEDIA_TYPES, result_media_type
from db.models import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("/{jobId}", response_model=JobOut, responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def read_job(job: OwnedJob) -> JobOut:
    """One enhancement job."""
    return JobOut.model_validate(job)


@router.get(
    "/{jobId}/result",
    response_class=Response,
    responses={
        200: {"content": {media: {} for media in RESULT_MEDIA_TYPES.values()}},
        **REDIRECT_RESPONSE,
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
    },
)
def read_result(job: OwnedJob, storage: StorageDep, settings: SettingsDep) -> Response:
    """The enhanced image of a completed job, in the format its batch asked for (streamed, or a redirect to a
    presigned URL)."""
    if job.status != JobStatus.COMPLETED or job.enhanced_key is None:
        raise NotFound(f"No enhanced image: the job is {job.status}")
    media_type = result_media_type(job.enhanced_key)
    return serve_object(storage, job.enhanced_key, media_type, settings, "Enhanced image not found in storage")
