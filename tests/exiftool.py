"""Reading an image's metadata with exiftool (Debian's libimage-exiftool-perl), as photo owners' tools see it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser import BROWSER_ENV

FIXTURE = Path(__file__).parent / "fixtures" / "metadata" / "phone.jpg"


def exiftool_path() -> str:
    """The system's exiftool (never downloaded); CI installs it with the browser (make browser)."""
    path = shutil.which("exiftool")
    if path is None:
        if BROWSER_ENV.ci:
            pytest.fail("exiftool is missing: .ci/run installs it (make browser)")
        pytest.skip("exiftool not installed (make browser installs it)")
    return path


def read_tags(data: bytes) -> dict[str, Any]:
    """Every tag exiftool finds, as "Group:Name" (family 1 groups: IFD0, ExifIFD, GPS, XMP-dc, IPTC...), with
    numeric values (-n), plus its warnings and errors."""
    done = subprocess.run(
        [exiftool_path(), "-j", "-a", "-G1", "-n", "-"], input=data, capture_output=True, check=True, timeout=60
    )
    (tags,) = json.loads(done.stdout)
    assert isinstance(tags, dict)
    return tags


def groups(tags: dict[str, Any]) -> set[str]:
    """The tag groups present (e.g. "GPS", "IFD1", "XMP-exif")."""
    return {name.split(":", 1)[0] for name in tags if ":" in name}


# What exiftool reads about the file rather than the photo, or derives from other tags: not metadata we carry.
_NOT_CARRIED_GROUPS = {"SourceFile", "ExifTool", "System", "File", "Composite", "JFIF", "ICC-header", "ICC_Profile"}
_LOCATION_TAGS = {
    "XMP-photoshop:City",
    "XMP-photoshop:Country",
    "XMP-iptcCore:Location",
    "XMP-iptcCore:CountryCode",
    "IPTC:City",
    "IPTC:Sub-location",
    "IPTC:Country-PrimaryLocationName",
}


def is_location(tag: str) -> bool:
    """GPS (EXIF's and XMP's) and place names: removed unless the owner keeps the location."""
    return tag.startswith("GPS:") or tag.startswith("XMP-exif:GPS") or tag in _LOCATION_TAGS


def account_for(
    source: dict[str, Any], output: dict[str, Any], size: tuple[int, int], keep_location: bool, iptc: bool = True
) -> dict[str, str]:
    """Every metadata field of the source, as kept (same value), changed (to what it must be) or dropped (on
    purpose); fails on any field that is none of these. iptc: whether the output format has a place for IPTC IIM
    (JPEG); elsewhere its fields live on in the XMP."""
    changed: dict[str, Any] = {
        "IFD0:Orientation": 1,
        "XMP-tiff:Orientation": 1,
        "IFD0:Software": "album-enhance",
        "ExifIFD:ExifImageWidth": size[0],
        "ExifIFD:ExifImageHeight": size[1],
        "ExifIFD:ColorSpace": 1,
    }
    fates: dict[str, str] = {}
    for tag, value in source.items():
        group = tag.split(":", 1)[0]
        if group in _NOT_CARRIED_GROUPS:
            continue
        if group == "IFD1" or (is_location(tag) and not keep_location) or (group == "IPTC" and not iptc):
            assert tag not in output, f"{tag} should have been dropped"
            fates[tag] = "dropped"
        elif tag in changed:
            # An orientation may also be left out (it then means 1, as AVIF's encoder does, writing its own box).
            assert output.get(tag, 1 if tag.endswith("Orientation") else None) == changed[tag], tag
            fates[tag] = "changed"
        else:
            assert output.get(tag) == value, f"{tag}: {output.get(tag)!r} instead of {value!r}"
            fates[tag] = "kept"
    return fates
