"""Enhancement jobs and their results."""

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import OwnedJob, SettingsDep, StorageDep
from api.downloads import REDIRECT_RESPONSE, serve_object
from api.schemas import ErrorOut, JobOut
from core.errors import NotFound
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
        200: {"content": {"image/jpeg": {}}},
        **REDIRECT_RESPONSE,
        401: {"model": ErrorOut},
        404: {"model": ErrorOut},
    },
)
def read_result(job: OwnedJob, storage: StorageDep, settings: SettingsDep) -> Response:
    """The enhanced JPEG of a completed job (streamed, or a redirect to a presigned URL)."""
    if job.status != JobStatus.COMPLETED or job.enhanced_key is None:
        raise NotFound(f"No enhanced image: the job is {job.status}")
    return serve_object(storage, job.enhanced_key, "image/jpeg", settings, "Enhanced image not found in storage")
