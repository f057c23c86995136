"""The source's metadata in the enhanced output, read back with exiftool: kept, changed or dropped on purpose."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps

from imaging import Output, OutputFormat, enhance_image
from imaging.metadata import SourceMetadata, carry_over
from tests.exiftool import FIXTURE, account_for, groups, read_tags
from tests.imaging.images import EXIF_ORIENTATION, QUADRANT_CENTRES, colour_at, decoded, encode, quadrants

PHONE = FIXTURE.read_bytes()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_every_field_of_a_phone_photo_is_kept_changed_or_dropped(fmt: OutputFormat) -> None:
    source = read_tags(PHONE)
    result = enhance_image(PHONE, 1024, output=Output(format=fmt))
    output = read_tags(result.data)
    assert output["File:MIMEType"] == f"image/{fmt}"
    fates = account_for(source, output, (result.width, result.height), keep_location=False, iptc=fmt == "jpeg")
    assert (result.width, result.height) == (1024, 681)  # displayed landscape: the stored pixels are sideways
    for tag in (
        "ExifIFD:DateTimeOriginal",
        "ExifIFD:OffsetTimeOriginal",
        "IFD0:Make",
        "IFD0:Model",
        "ExifIFD:LensModel",
        "ExifIFD:ExposureTime",
        "ExifIFD:FocalLength",
        "IFD0:Artist",
        "IFD0:Copyright",
        "IFD0:ImageDescription",
        "XMP-dc:Subject",
    ):
        assert fates[tag] == "kept"
    assert output["XMP-dc:Subject"] == ["cat", "windowsill", "Lisbon"]
    assert output["Composite:SubSecDateTimeOriginal"] == "2024:07:14 18:32:05.417+02:00"
    assert not {"GPS", "IFD1"} & groups(output)
    assert not [tag for tag in output if "GPS" in tag or "City" in tag]
    assert not [tag for tag in output if tag.startswith(("ExifTool:Warning", "ExifTool:Error"))]
    assert result.notes == ()


def test_location_is_kept_when_asked() -> None:
    source = read_tags(PHONE)
    result = enhance_image(PHONE, 1024, output=Output(keep_location=True))
    output = read_tags(result.data)
    fates = account_for(source, output, (result.width, result.height), keep_location=True)
    assert fates["GPS:GPSLatitude"] == fates["XMP-photoshop:City"] == fates["IPTC:City"] == "kept"
    assert output["Composite:GPSLatitude"] == pytest.approx(38.7223)
    assert output["Composite:GPSLongitude"] == pytest.approx(-9.1393)


def test_iptc_keywords_survive_in_jpeg() -> None:
    output = read_tags(enhance_image(PHONE, 512).data)
    assert output["IPTC:Keywords"] == ["cat", "windowsill"]
    assert output["IPTC:By-line"] == "Ana Lima"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_comes_out_upright_with_orientation_1(orientation: int) -> None:
    stored = quadrants(90, 60)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    exif[0x010F] = "Camera maker"
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    result = enhance_image(data, 180)
    tags = read_tags(result.data)
    assert tags["IFD0:Orientation"] == 1
    assert tags["IFD0:Make"] == "Camera maker"
    # Displayed as stored from now on: the pixels are the upright picture, quadrant by quadrant.
    shown = decoded(result.data)
    expected = (180, 120) if upright.shape[1] > upright.shape[0] else (120, 180)
    assert shown.shape[1::-1] == (result.width, result.height) == expected
    for fx, fy in QUADRANT_CENTRES:
        want = np.array(colour_at(upright, fx, fy))
        assert np.abs(np.array(colour_at(shown, fx, fy)) - want).max() <= 12, (orientation, fx, fy)


def test_the_pixels_are_the_same_with_and_without_metadata() -> None:
    with_metadata = enhance_image(PHONE, 1024)
    without = enhance_image(PHONE, 1024, output=Output(metadata=False))
    assert len(with_metadata.data) > len(without.data)
    np.testing.assert_array_equal(decoded(with_metadata.data), decoded(without.data))
    # The same encoded picture: only the metadata segments in front of it differ.
    assert with_metadata.data.endswith(without.data[without.data.index(b"\xff\xdb") :])


def _exif_with(extra: dict[int, object], exif_ifd: dict[int, object] | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Make"
    exif.update(extra)
    if exif_ifd is not None:
        exif[0x8769] = exif_ifd
    return exif.tobytes()


def test_maker_notes_are_dropped_with_a_note() -> None:
    exif = _exif_with({}, {0x927C: b"Apple iOS\x00" + bytes(200), 0x9003: "2020:01:02 03:04:05"})
    result = enhance_image(encode(quadrants(), "JPEG", exif=exif), 120)
    tags = read_tags(result.data)
    assert "ExifIFD:MakerNoteUnknownText" not in tags and not [t for t in tags if "MakerNote" in t]
    assert tags["ExifIFD:DateTimeOriginal"] == "2020:01:02 03:04:05"
    assert any("maker notes dropped" in note for note in result.notes)


def _jpeg_with_segments(*segments: bytes) -> bytes:
    plain = encode(quadrants(), "JPEG", quality=95)
    return plain[:2] + b"".join(segments) + plain[2:]


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&lol3;</x:xmpmeta>'
)


@pytest.mark.parametrize(
    ("what", "segment"),
    [
        ("EXIF", _segment(0xE1, b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + bytes(20))),
        ("EXIF", _segment(0xE1, b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\x01\x00\x0f\x01\x02\x00\xff\xff\xff\x7f")),
        ("XMP", _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + BILLION_LAUGHS)),
        ("XMP", _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:RDF></x:xmpmeta>")),
        ("IPTC", _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x05\x1c\x02\x19\xff\xff")),
    ],
    ids=["exif-bad-ifd-count", "exif-huge-string", "xmp-entity-bomb", "xmp-malformed", "iptc-overrun"],
)
def test_broken_or_hostile_metadata_is_dropped_never_fatal(what: str, segment: bytes) -> None:
    result = enhance_image(_jpeg_with_segments(segment), 120)
    assert (result.width, result.height) == (120, 80)
    assert any(note.startswith(f"{what} unreadable") for note in result.notes), result.notes
    tags = read_tags(result.data)
    assert not [tag for tag in tags if tag.startswith("ExifTool:Error")]


def test_metadata_of_other_formats_is_carried_too() -> None:
    exif = _exif_with({0x0110: "Model X", EXIF_ORIENTATION: 3})
    for fmt in ("PNG", "WEBP"):
        result = enhance_image(encode(quadrants(), fmt, exif=exif), 120, output=Output(format="png"))
        tags = read_tags(result.data)
        assert tags["IFD0:Model"] == "Model X" and tags["IFD0:Orientation"] == 1, fmt


def test_carry_over_costs_little_and_leaves_no_location() -> None:
    image = Image.open(io.BytesIO(PHONE))
    source = SourceMetadata(exif=image.info["exif"], xmp=image.info["xmp"], iptc=image.info["photoshop"][0x0404])
    carried = carry_over(source, (100, 50), keep_location=False)
    assert carried.exif is not None and carried.xmp is not None and carried.iptc is not None
    assert b"Lisbon" not in carried.iptc and b"GPS" not in carried.xmp and b"City" not in carried.xmp
