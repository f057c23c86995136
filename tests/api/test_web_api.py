"""The routes the web app uses: batch events (SSE), thumbnails, subset enhance, deletes and the results zip, over
real HTTP on SQLite and PostgreSQL (direct mode)."""

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import Session

from db import ledger
from db.models import Album, Batch, BatchStatus, EnhancementJob, Image, JobStatus, LedgerType, Tier
from db.session import session_scope
from services.deployment import MARKER_KEY
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings, wait_until
from tests.db_helpers import assert_balance_matches_ledger, balance, batch_row, jobs_of_batch, ledger_entries
from tests.factories import (
    charge_batch,
    make_album,
    make_album_with_images,
    make_image,
    make_images,
    make_pending_job,
    make_user,
    photo_bytes,
)

# --- helpers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sse:
    id: str | None
    name: str
    data: dict


def read_events(h: Harness, batch_id: str, headers: dict[str, str]) -> list[Sse]:
    """The whole stream of a batch (it ends by itself when the batch is over)."""
    events, block = [], []
    with h.http.stream("GET", f"/api/batches/{batch_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                block.append(line)
                continue
            fields = dict(item.split(": ", 1) for item in block if not item.startswith(":") and ": " in item)
            if "event" in fields:
                events.append(Sse(fields.get("id"), fields["event"], json.loads(fields["data"])))
            block = []
    return events


def enhance(h: Harness, album: str, headers: dict[str, str], body: dict) -> httpx.Response:
    return h.http.post(f"/api/albums/{album}/enhance", headers=headers, json=body)


def wait_for_batch(h: Harness, batch_id: str) -> None:
    wait_until(lambda: batch_row(h.engine, batch_id).status == "COMPLETED")


def finished_batch(h: Harness, images: int = 2) -> tuple:
    user, album, image_ids = make_album_with_images(h.engine, h.storage, images)
    response = enhance(h, album, user.headers, {"tier": "TIER_1K"})
    assert response.status_code == 200, response.text
    batch_id = response.json()["batchId"]
    wait_until(lambda: batch_row(h.engine, batch_id).status == "COMPLETED")
    return user, album, image_ids, batch_id


# --- Server-Sent Events ----------------------------------------------------------------------------------------


def test_events_describe_the_batch_and_end_with_it(direct_harness: Harness) -> None:
    h = direct_harness
    user, _, image_ids, batch_id = finished_batch(h)
    events = read_events(h, batch_id, user.headers)
    names = [event.name for event in events]
    assert names == ["job", "job", "batch", "end"]
    assert [e.data["imageId"] for e in events[:2]] == image_ids
    assert all(e.data["status"] == "COMPLETED" for e in events[:2])
    summary = events[2].data
    assert (summary["status"], summary["totalImages"], summary["completed"], summary["pending"]) == (
        "COMPLETED",
        2,
        2,
        0,
    )
    assert summary["tokensCharged"] == 4 and summary["tokensRefunded"] == 0
    assert len({event.id for event in events[:3]}) == 3, "every event has its own id"


def test_last_event_id_resumes_with_only_what_changed(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 2)
    # A batch charged as the route does, written straight to the database (no runner picks it up): it finishes
    # while the client is away.
    with session_scope(h.engine) as session:
        planned = charge_batch(session, user.id, album)
        assert planned.batch is not None
        batch_id, job_ids = planned.batch.id, [job.id for job in planned.jobs]
        planned.jobs[0].status = JobStatus.COMPLETED
        planned.batch.status = BatchStatus.RUNNING
        session.add_all([planned.jobs[0], planned.batch])
    known = "R.CP"  # the client saw job 0 completed and job 1 pending while the batch ran
    with Session(h.engine) as session:
        session.get_one(EnhancementJob, job_ids[1]).status = JobStatus.FAILED
        session.get_one(Batch, batch_id).status = BatchStatus.COMPLETED
        session.commit()
    events = read_events(h, batch_id, {**user.headers, "Last-Event-ID": known})
    assert [(e.name, e.data.get("jobId")) for e in events] == [("job", job_ids[1]), ("batch", None), ("end", None)]
    assert events[0].id == "R.CF" and events[1].id == "C.CF"
    # Reconnecting with the last id: nothing new, just the end.
    again = read_events(h, batch_id, {**user.headers, "Last-Event-ID": events[1].id})
    assert [e.name for e in again] == ["end"]
    # A garbled id is treated as knowing nothing: the whole state again.
    garbled = read_events(h, batch_id, {**user.headers, "Last-Event-ID": "nonsense"})
    assert [e.name for e in garbled] == ["job", "job", "batch", "end"]


def test_a_live_stream_sends_keepalives_then_each_change_as_it_happens(db_url: str, storage: LocalStorage) -> None:
    settings = make_settings(db_url, storage, events_poll_seconds=0.05, events_keepalive_seconds=0.2)
    engine = engine_for(db_url)
    user, album, [image] = make_album_with_images(engine, storage, 1)
    job_id = make_pending_job(engine, user, album, image, Tier.TIER_1K)
    with LiveServer(settings) as api, Session(engine) as session:
        job = session.get_one(EnhancementJob, job_id)
        url = f"/api/batches/{job.batch_id}/events"
        with api.http.stream("GET", url, headers=user.headers) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: job"
            assert next(line for line in lines if line.startswith("event:")) == "event: batch"
            # Nothing changes: the stream stays open and says so.
            assert next(line for line in lines if line.startswith(":")) == ": keep-alive"
            job.status = JobStatus.COMPLETED
            session.add(job)
            session.commit()
            assert '"status":"COMPLETED"' in next(line for line in lines if line.startswith("data:"))
            session.get_one(Batch, job.batch_id).status = BatchStatus.COMPLETED
            session.commit()
            rest = [line for line in lines if line.startswith("event:")]
    # The counts after the job's change, the batch's new status, then the end.
    assert rest == ["event: batch", "event: batch", "event: end"]


def test_an_open_stream_does_not_hold_a_request_slot(db_url: str, storage: LocalStorage) -> None:
    settings = make_settings(db_url, storage, api_concurrency=1, api_queue_timeout_seconds=0.2)
    engine = engine_for(db_url)
    user, album, [image] = make_album_with_images(engine, storage, 1)
    job_id = make_pending_job(engine, user, album, image, Tier.TIER_1K)
    with LiveServer(settings) as api, session_scope(engine) as session:
        job = session.get_one(EnhancementJob, job_id)
        with api.http.stream("GET", f"/api/batches/{job.batch_id}/events", headers=user.headers) as response:
            assert next(line for line in response.iter_lines() if line.startswith("event:")) == "event: job"
            # A stream lasts as long as its batch: it must not keep the one request slot.
            assert api.http.get("/api/me", headers=user.headers).status_code == 200
        # Leave no unfinished batch behind.
        job.status = JobStatus.CANCELLED
        session.get_one(Batch, job.batch_id).status = BatchStatus.CANCELLED


def test_a_stream_tells_each_new_step_of_an_image_in_progress(db_url: str, storage: LocalStorage) -> None:
    settings = make_settings(db_url, storage, events_poll_seconds=0.05)
    engine = engine_for(db_url)
    user, album, [image] = make_album_with_images(engine, storage, 1)
    job_id = make_pending_job(engine, user, album, image, Tier.TIER_4K)
    with session_scope(engine) as session:
        job = session.get_one(EnhancementJob, job_id)
        job.status, job.progress = JobStatus.PROCESSING, "tile 3 of 12"
        job.started_at = datetime.now(UTC) - timedelta(seconds=30)
        batch_id = job.batch_id
    url = f"/api/batches/{batch_id}/events"
    with (
        LiveServer(settings) as api,
        Session(engine) as session,
        api.http.stream("GET", url, headers=user.headers) as response,
    ):
        lines = response.iter_lines()
        first = [next_event(lines) for _ in range(3)]
        assert [event.name for event in first] == ["job", "batch", "step"]
        step = first[2]
        assert (step.data["jobId"], step.data["imageId"], step.data["step"]) == (job_id, image, "tile 3 of 12")
        # Seconds since the image started, on the server's clock: what an estimate needs.
        assert 29 <= step.data["elapsedSeconds"] < 60
        # A step is not a change of state: resuming after it is resuming after the batch event.
        assert step.id == first[1].id
        job = session.get_one(EnhancementJob, job_id)
        job.progress = "tile 4 of 12"
        session.commit()
        second = next_event(lines)
        assert (second.name, second.data["step"]) == ("step", "tile 4 of 12")
        job.status = JobStatus.COMPLETED  # its last step stays on the row
        session.get_one(Batch, batch_id).status = BatchStatus.COMPLETED
        session.commit()
        rest: list[Sse] = []
        while not rest or rest[-1].name != "end":
            rest.append(next_event(lines))
    # Once the image is done, no more steps: its change, the counts, the end.
    assert [event.name for event in rest] == ["job", "batch", "end"]


def test_a_stream_says_a_batch_is_cancelling_until_it_has_ended(db_url: str, storage: LocalStorage) -> None:
    settings = make_settings(db_url, storage, events_poll_seconds=0.05)
    engine = engine_for(db_url)
    user, album, [image] = make_album_with_images(engine, storage, 1)
    job_id = make_pending_job(engine, user, album, image, Tier.TIER_1K)
    with session_scope(engine) as session:
        batch_id = session.get_one(EnhancementJob, job_id).batch_id  # CHARGED: no driver of this server takes it up
    url = f"/api/batches/{batch_id}/events"
    with (
        LiveServer(settings) as api,
        Session(engine) as session,
        api.http.stream("GET", url, headers=user.headers) as response,
    ):
        lines = response.iter_lines()
        first = [next_event(lines) for _ in range(2)]
        assert [(e.name, e.id) for e in first] == [("job", "-.P"), ("batch", "H.P")]
        assert first[1].data["cancelRequested"] is False
        # Asked to cancel (by this page, another tab or the CLI): said at once, before anything has stopped.
        session.get_one(Batch, batch_id).cancel_requested = True
        session.commit()
        cancelling = next_event(lines)
        assert (cancelling.name, cancelling.id, cancelling.data["status"]) == ("batch", "K.P", "CHARGED")
        assert cancelling.data["cancelRequested"] is True
        session.get_one(EnhancementJob, job_id).status = JobStatus.CANCELLED
        session.get_one(Batch, batch_id).status = BatchStatus.CANCELLED
        session.commit()
        rest = [next_event(lines) for _ in range(3)]
    assert [(e.name, e.id) for e in rest] == [("job", "K.X"), ("batch", "X.X"), ("end", "X.X")]


def next_event(lines: Iterator[str]) -> Sse:
    """The next event of an open stream (comments and retry hints skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "event" in fields:
                return Sse(fields.get("id"), fields["event"], json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":") and ": " in line:
            name, value = line.split(": ", 1)
            fields[name] = value
    raise AssertionError("the stream ended")


def test_events_of_another_users_batch_are_404(direct_harness: Harness) -> None:
    h = direct_harness
    _, _, _, batch_id = finished_batch(h, images=1)
    intruder = make_user(h.engine)
    response = h.http.get(f"/api/batches/{batch_id}/events", headers=intruder.headers)
    assert (response.status_code, response.json()) == (404, {"error": "Batch not found"})
    assert h.http.get(f"/api/batches/{batch_id}/events").status_code == 401


# --- thumbnails --------------------------------------------------------------------------------------------------


def test_thumbnail_is_a_small_cached_jpeg(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    image = make_image(h.engine, h.storage, album, photo_bytes("rocket.jpg"))
    response = h.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with PILImage.open(io.BytesIO(response.content)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == h.settings.thumbnail_size
    assert "private" in response.headers["cache-control"]
    etag = response.headers["etag"]
    again = h.http.get(f"/api/images/{image}/thumbnail", headers={**user.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    cached = list((h.storage.root / "thumbnails").iterdir())
    assert len(cached) == 1


def test_thumbnail_keeps_alpha_and_keeps_small_images_small(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    transparent = PILImage.new("RGBA", (40, 20), (0, 0, 0, 0))
    transparent.paste((200, 30, 30, 255), (10, 5, 30, 15))
    data = io.BytesIO()
    transparent.save(data, "PNG")
    image = make_image(h.engine, h.storage, album, data.getvalue())
    response = h.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
    assert response.headers["content-type"] == "image/webp"
    with PILImage.open(io.BytesIO(response.content)) as thumb:
        assert thumb.size == (40, 20) and thumb.mode == "RGBA"
        pixels = np.asarray(thumb)
        assert pixels[2, 2, 3] == 0
        red, green, blue, alpha = (int(value) for value in pixels[10, 20])
        assert alpha == 255 and red > 170 and green < 60 and blue < 60


def test_thumbnail_of_another_users_image_is_404_and_not_made(direct_harness: Harness) -> None:
    h = direct_harness
    owner, _, [image] = make_album_with_images(h.engine, h.storage, 1)
    intruder = make_user(h.engine)
    response = h.http.get(f"/api/images/{image}/thumbnail", headers=intruder.headers)
    assert (response.status_code, response.json()) == (404, {"error": "Image not found"})
    assert not (h.storage.root / "thumbnails").exists()


def test_thumbnail_of_a_corrupt_original_is_404(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    image = make_image(h.engine, h.storage, album, b"not an image")
    response = h.http.get(f"/api/images/{image}/thumbnail", headers=user.headers)
    assert response.status_code == 404 and "not a readable image" in response.json()["error"]


# --- enhance a subset --------------------------------------------------------------------------------------------


def test_image_ids_enhance_only_those(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, image_ids = make_album_with_images(h.engine, h.storage, 4)
    chosen = [image_ids[2], image_ids[0]]
    response = enhance(h, album, user.headers, {"tier": "TIER_2K", "imageIds": chosen})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["totalImages"], body["queued"], body["skipped"], body["totalCost"]) == (2, 2, 0, 10)
    assert [job["imageId"] for job in body["jobs"]] == [image_ids[0], image_ids[2]]  # album order
    wait_until(lambda: batch_row(h.engine, body["batchId"]).status == "COMPLETED")
    # Again, with one of them done: skipped as usual.
    again = enhance(h, album, user.headers, {"tier": "TIER_2K", "imageIds": [image_ids[0], image_ids[1]]}).json()
    assert (again["totalImages"], again["skipped"], again["queued"]) == (2, 1, 1)
    wait_until(lambda: batch_row(h.engine, again["batchId"]).status == "COMPLETED")
    assert_balance_matches_ledger(h.engine, user.id)


def test_image_ids_beat_the_batch_limit_of_a_big_album(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, image_ids = make_album_with_images(h.engine, h.storage, 21, tokens=200)
    assert enhance(h, album, user.headers, {"tier": "TIER_1K"}).status_code == 400
    response = enhance(h, album, user.headers, {"tier": "TIER_1K", "imageIds": image_ids[:20]})
    assert response.status_code == 200 and response.json()["queued"] == 20
    wait_until(lambda: batch_row(h.engine, response.json()["batchId"]).status == "COMPLETED")


@pytest.mark.parametrize(
    "image_ids",
    [[], ["x", "x"], "not-a-list", [1], [""], ["a" * 65], ["ok"] * 501],
    ids=["empty", "duplicates", "string", "number", "blank", "too-long-id", "too-many"],
)
def test_malformed_image_ids_are_400(direct_harness: Harness, image_ids: object) -> None:
    h = direct_harness
    user, album, _ = make_album_with_images(h.engine, h.storage, 1)
    response = enhance(h, album, user.headers, {"tier": "TIER_1K", "imageIds": image_ids})
    assert response.status_code == 400
    assert "imageIds" in response.json()["error"]
    assert balance(h.engine, user.id) == 100


def test_image_ids_of_another_album_are_400_and_leak_nothing(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, [mine] = make_album_with_images(h.engine, h.storage, 1)
    _, _, [theirs] = make_album_with_images(h.engine, h.storage, 1)
    my_other_album = make_album(h.engine, user)
    [my_other] = make_images(h.engine, h.storage, my_other_album, 1)
    for foreign in (theirs, my_other, "no-such-image"):
        response = enhance(h, album, user.headers, {"tier": "TIER_1K", "imageIds": [mine, foreign]})
        assert response.status_code == 400
        assert response.json() == {"error": "Some imageIds are not images of this album", "unknownImageIds": [foreign]}
    assert balance(h.engine, user.id) == 100
    assert ledger_entries(h.engine, user.id, LedgerType.CONSUME) == []


# --- deletes -----------------------------------------------------------------------------------------------------


def test_deleting_an_image_keeps_the_history_and_the_balance(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, image_ids, batch_id = finished_batch(h)
    h.http.get(f"/api/images/{image_ids[0]}/thumbnail", headers=user.headers)
    [job, _] = jobs_of_batch(h.engine, batch_id)
    ledger_before = ledger_entries(h.engine, user.id)
    files_before = {p for p in h.storage.root.rglob("*") if p.is_file()}

    response = h.http.delete(f"/api/images/{image_ids[0]}", headers=user.headers)
    assert response.status_code == 204

    files_after = {p for p in h.storage.root.rglob("*") if p.is_file()}
    gone = {p.relative_to(h.storage.root).parts[0] for p in files_before - files_after}
    assert gone == {"originals", "enhanced", "thumbnails"}
    assert len(files_before - files_after) == 3
    with Session(h.engine) as session:
        assert session.get(Image, image_ids[0]) is None
        kept = session.get_one(EnhancementJob, job.id)
        assert (kept.image_id, kept.status, kept.tokens_cost, kept.enhanced_key) == (None, "COMPLETED", 2, None)
    assert ledger_entries(h.engine, user.id) == ledger_before
    assert_balance_matches_ledger(h.engine, user.id)
    # The history still reads; the deleted photo is gone for good.
    summary = h.http.get(f"/api/batches/{batch_id}", headers=user.headers).json()
    assert summary["completed"] == 2 and summary["jobs"][0]["imageId"] is None
    assert h.http.get(f"/api/jobs/{job.id}/result", headers=user.headers).status_code == 404
    assert h.http.get(f"/api/images/{image_ids[0]}/original", headers=user.headers).status_code == 404
    assert [i["id"] for i in h.http.get(f"/api/albums/{album}", headers=user.headers).json()["images"]] == [
        image_ids[1]
    ]


def test_deleting_an_image_in_flight_is_409(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, [image] = make_album_with_images(h.engine, h.storage, 1)
    job_id = make_pending_job(h.engine, user, album, image, Tier.TIER_1K, cost=2)
    response = h.http.delete(f"/api/images/{image}", headers=user.headers)
    assert response.status_code == 409 and "in progress" in response.json()["error"]
    album_response = h.http.delete(f"/api/albums/{album}", headers=user.headers)
    assert album_response.status_code == 409
    with Session(h.engine) as session:
        assert session.get(Album, album) is not None
        assert h.storage.exists(session.get_one(Image, image).original_key)
    # Once the batch is over, the same delete goes through.
    with session_scope(h.engine) as session:
        job = session.get_one(EnhancementJob, job_id)
        job.status = JobStatus.FAILED
        session.get_one(Batch, job.batch_id).status = BatchStatus.FAILED
    assert h.http.delete(f"/api/images/{image}", headers=user.headers).status_code == 204


def test_deleting_another_users_image_or_album_is_refused(direct_harness: Harness) -> None:
    h = direct_harness
    owner, album, [image] = make_album_with_images(h.engine, h.storage, 1)
    intruder = make_user(h.engine)
    response = h.http.delete(f"/api/images/{image}", headers=intruder.headers)
    assert (response.status_code, response.json()) == (404, {"error": "Image not found"})
    response = h.http.delete(f"/api/albums/{album}", headers=intruder.headers)
    assert (response.status_code, response.json()) == (403, {"error": "You do not own this album"})
    assert h.http.get(f"/api/albums/{album}", headers=owner.headers).json()["imageCount"] == 1


def test_deleting_an_album_removes_its_photos_and_keeps_its_batches(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, _, batch_id = finished_batch(h)
    balance_before = balance(h.engine, user.id)
    response = h.http.delete(f"/api/albums/{album}", headers=user.headers)
    assert response.status_code == 204
    assert h.http.get(f"/api/albums/{album}", headers=user.headers).status_code == 404
    assert [p for p in h.storage.root.rglob("*") if p.is_file()] == [h.storage.path_for(MARKER_KEY)]
    assert batch_row(h.engine, batch_id).album_id is None
    assert h.http.get(f"/api/batches/{batch_id}", headers=user.headers).json()["albumId"] is None
    assert balance(h.engine, user.id) == balance_before
    assert_balance_matches_ledger(h.engine, user.id)


# --- results zip -------------------------------------------------------------------------------------------------


def test_results_zip_holds_the_newest_result_of_each_image(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    upload = h.http.post(
        f"/api/albums/{album}/images",
        headers=user.headers,
        files=[
            ("files", ("rocket.jpg", photo_bytes("rocket.jpg"), "image/jpeg")),
            ("files", ("rocket.jpg", photo_bytes("rocket.jpg"), "image/jpeg")),
            ("files", ("chelsea.png", photo_bytes("chelsea.png"), "image/png")),
        ],
    )
    assert upload.status_code == 201
    assert h.http.get(f"/api/albums/{album}/results.zip", headers=user.headers).status_code == 404
    for tier in ("TIER_1K", "TIER_2K"):
        wait_for_batch(h, enhance(h, album, user.headers, {"tier": tier}).json()["batchId"])
    response = h.http.get(f"/api/albums/{album}/results.zip", headers=user.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["rocket-2K.jpg", "rocket-2K-2.jpg", "chelsea-2K.jpg"]
        with PILImage.open(io.BytesIO(archive.read("chelsea-2K.jpg"))) as photo:
            assert max(photo.size) == 2048


# --- the ledger's context ----------------------------------------------------------------------------------------


def test_ledger_rows_say_which_album_batch_and_photo_they_were_for(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, image_ids = make_album_with_images(h.engine, h.storage, 2, tokens=20)
    with session_scope(h.engine) as session:
        session.get_one(Album, album).name = "Harbour walk"
        for image_id, name in zip(image_ids, ("rocket.jpg", "coffee.png"), strict=True):
            session.get_one(Image, image_id).original_filename = name
    with session_scope(h.engine) as session:
        planned = charge_batch(session, user.id, album, Tier.TIER_2K)
        assert planned.batch is not None
        batch_id, job_ids = planned.batch.id, [job.id for job in planned.jobs]
    with session_scope(h.engine) as session:
        session.get_one(EnhancementJob, job_ids[0]).status = JobStatus.COMPLETED
        assert ledger.refund_job(session, job_ids[1], JobStatus.CANCELLED, "Cancelled") == 5
        session.get_one(Batch, batch_id).status = BatchStatus.CANCELLED
    make_album_with_images(h.engine, h.storage, 1)  # another user's rows stay theirs

    def ledger_rows() -> list[dict]:
        response = h.http.get("/api/tokens/transactions", headers=user.headers)
        assert response.status_code == 200, response.text
        return list(response.json()["transactions"])

    rows = ledger_rows()
    assert [(row["type"], row["amount"], row["balanceAfter"]) for row in rows] == [
        ("REFUND", 5, 15),
        ("CONSUME", -10, 10),
        ("GRANT", 20, 20),
    ]
    base = {"batchId": batch_id, "albumId": album, "albumName": "Harbour walk", "tier": "TIER_2K"}
    assert rows[0]["context"] == base | {"images": None, "imageId": image_ids[1], "imageFilename": "coffee.png"}
    assert rows[1]["context"] == base | {"images": 2, "imageId": None, "imageFilename": None}
    assert rows[2]["context"] is None
    # The album and its photos deleted: the rows still name their batch, and say the rest is gone.
    assert h.http.delete(f"/api/albums/{album}", headers=user.headers).status_code == 204
    gone = {"batchId": batch_id, "albumId": None, "albumName": None, "tier": "TIER_2K"}
    rows = ledger_rows()
    assert rows[0]["context"] == gone | {"images": None, "imageId": None, "imageFilename": None}
    assert rows[1]["context"] == gone | {"images": 2, "imageId": None, "imageFilename": None}
    assert_balance_matches_ledger(h.engine, user.id)
