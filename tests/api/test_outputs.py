"""A phone photo and a transparent sticker through upload, batch, download and the zip, in both modes: the metadata
read back with exiftool (every field kept, changed or dropped on purpose), the location only when asked, the format
asked for, transparency kept."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from db.models import BatchStatus
from tests.conftest import Harness, eventually
from tests.db_helpers import batch_row
from tests.exiftool import FIXTURE, account_for, read_tags
from tests.factories import UserWithKey, make_album, make_user

pytestmark = pytest.mark.asyncio(loop_scope="session")

PHONE = FIXTURE.read_bytes()


def sticker() -> bytes:
    """A 200x160 PNG: an orange disc on a transparent background, with a soft edge."""
    yy, xx = np.mgrid[:160, :200]
    distance = np.hypot(xx - 100, yy - 80)
    pixels = np.zeros((160, 200, 4), np.uint8)
    pixels[..., :3] = (255, 140, 0)
    pixels[..., 3] = np.clip((70 - distance) * 64, 0, 255).astype(np.uint8)
    pixels[pixels[..., 3] == 0, :3] = 0  # what most editors leave under transparent pixels
    out = io.BytesIO()
    PILImage.fromarray(pixels, "RGBA").save(out, "PNG")
    return out.getvalue()


async def enhanced_album(h: Harness, body: dict) -> tuple[UserWithKey, str, dict]:
    """Upload the two photos, enhance with body, wait for the batch; the user, album and batch summary."""
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    async with h.async_http() as http:
        upload = await http.post(
            f"/api/albums/{album}/images",
            headers=user.headers,
            files=[
                ("files", ("phone.jpg", PHONE, "image/jpeg")),
                ("files", ("sticker.png", sticker(), "image/png")),
            ],
        )
        assert upload.status_code == 201, upload.text
        response = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json=body)
        assert response.status_code == 200, response.text
        batch_id = response.json()["batchId"]
        await eventually(lambda: batch_row(h.engine, batch_id).status == BatchStatus.COMPLETED, within=120)
        summary = (await http.get(f"/api/batches/{batch_id}", headers=user.headers)).json()
    return user, album, summary


async def results(h: Harness, user: UserWithKey, album: str, summary: dict) -> tuple[dict, dict]:
    """Each job's download (media type, bytes) by image order, and the zip's files by name."""
    async with h.async_http() as http:
        downloads = {}
        for job in summary["jobs"]:
            response = await http.get(f"/api/jobs/{job['id']}/result", headers=user.headers)
            assert response.status_code == 200
            assert response.headers["content-type"] == job["enhancedFormat"]
            downloads[job["imageId"]] = (response.headers["content-type"], response.content)
        archive = await http.get(f"/api/albums/{album}/results.zip", headers=user.headers)
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as files:
        return downloads, {name: files.read(name) for name in files.namelist()}


def check_sticker(data: bytes, size: tuple[int, int]) -> None:
    """Transparency kept: alpha close to the source's alpha resized (PSNR), and no dark fringe at the edge."""
    with PILImage.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA" and image.size == size
        rgba = np.asarray(image).astype(np.float64)
    with PILImage.open(io.BytesIO(sticker())) as source:
        reference = np.asarray(source.getchannel("A").resize(size, PILImage.Resampling.LANCZOS)).astype(np.float64)
    mse = float(np.mean((rgba[..., 3] - reference) ** 2))
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30
    edge = (rgba[..., 3] > 8) & (rgba[..., 3] < 247)
    assert edge.sum() > 100
    # The visible colour of the soft edge stays orange: no black bleeding in from the hidden pixels.
    assert rgba[edge, 0].min() > 200 and np.abs(rgba[edge, 1] - 140).max() < 40


async def test_auto_format_in_direct_mode(direct_harness: Harness) -> None:
    await auto_format_keeps_metadata_without_location_and_transparency(direct_harness)


async def test_auto_format_in_temporal_mode(temporal_harness: Harness) -> None:
    await auto_format_keeps_metadata_without_location_and_transparency(temporal_harness)


async def auto_format_keeps_metadata_without_location_and_transparency(h: Harness) -> None:
    user, album, summary = await enhanced_album(h, {"tier": "TIER_1K", "outputFormat": "auto"})
    assert (summary["outputFormat"], summary["keepLocation"]) == ("auto", False)
    downloads, zipped = await results(h, user, album, summary)
    assert sorted(zipped) == ["phone-1K.jpg", "sticker-1K.png"]
    (phone_type, phone), (sticker_type, sticker_result) = downloads.values()
    assert (phone_type, sticker_type) == ("image/jpeg", "image/png")
    assert zipped["phone-1K.jpg"] == phone and zipped["sticker-1K.png"] == sticker_result
    fates = account_for(read_tags(FIXTURE.read_bytes()), read_tags(phone), (1024, 681), keep_location=False)
    assert fates["ExifIFD:DateTimeOriginal"] == "kept" and fates["GPS:GPSLatitude"] == "dropped"
    check_sticker(sticker_result, (1024, 819))


async def test_keep_location_and_webp(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, summary = await enhanced_album(h, {"tier": "TIER_1K", "outputFormat": "webp", "keepLocation": True})
    downloads, zipped = await results(h, user, album, summary)
    assert sorted(zipped) == ["phone-1K.webp", "sticker-1K.webp"]
    phone = zipped["phone-1K.webp"]
    tags = read_tags(phone)
    assert tags["File:MIMEType"] == "image/webp"
    account_for(read_tags(PHONE), tags, (1024, 681), keep_location=True, iptc=False)
    assert tags["Composite:GPSLatitude"] == pytest.approx(38.7223)
    with PILImage.open(io.BytesIO(zipped["sticker-1K.webp"])) as image:
        assert image.mode == "RGBA"


async def test_without_the_new_fields_results_are_jpeg_without_location(direct_harness: Harness) -> None:
    h = direct_harness
    user, album, summary = await enhanced_album(h, {"tier": "TIER_1K"})
    assert (summary["outputFormat"], summary["keepLocation"]) == ("jpeg", False)
    downloads, zipped = await results(h, user, album, summary)
    assert sorted(zipped) == ["phone-1K.jpg", "sticker-1K.jpg"]
    tags = read_tags(zipped["phone-1K.jpg"])
    assert "GPS:GPSLatitude" not in tags and tags["IFD0:Model"] == "iPhone 15 Pro"
    with PILImage.open(io.BytesIO(zipped["sticker-1K.jpg"])) as image:
        assert image.mode == "RGB"  # flattened on white, as before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"tier": "TIER_1K", "outputFormat": "gif"},
            "Invalid outputFormat. Must be one of: jpeg, png, webp, avif, auto",
        ),
        ({"tier": "TIER_1K", "keepLocation": "yes"}, "keepLocation must be a boolean"),
        ({"tier": "TIER_1K", "keepLocation": 1}, "keepLocation must be a boolean"),
    ],
)
async def test_bad_output_fields_are_400_and_charge_nothing(direct_harness: Harness, body: dict, message: str) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    async with h.async_http() as http:
        response = await http.post(f"/api/albums/{album}/enhance", headers=user.headers, json=body)
        me = (await http.get("/api/me", headers=user.headers)).json()
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert me["tokenBalance"] == 100


async def test_an_idempotency_key_covers_the_output_choices(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    album = make_album(h.engine, user)
    headers = {**user.headers, "Idempotency-Key": "output-choices"}
    body = {"tier": "TIER_1K", "outputFormat": "png"}
    async with h.async_http() as http:
        upload = await http.post(
            f"/api/albums/{album}/images", headers=user.headers, files=[("files", ("phone.jpg", PHONE, "image/jpeg"))]
        )
        assert upload.status_code == 201
        first = await http.post(f"/api/albums/{album}/enhance", headers=headers, json=body)
        again = await http.post(f"/api/albums/{album}/enhance", headers=headers, json=body)
        other = await http.post(f"/api/albums/{album}/enhance", headers=headers, json={**body, "outputFormat": "webp"})
        located = await http.post(f"/api/albums/{album}/enhance", headers=headers, json={**body, "keepLocation": True})
    assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert first.json() == again.json()
    assert other.status_code == located.status_code == 422
