"""A photo's metadata (EXIF, XMP, IPTC) carried over to its enhanced output, with what must change changed.

Kept: everything that describes the photo (capture date and offset, camera, lens, exposure, artist, copyright,
description, keywords, ratings). Changed: the orientation is 1 (the output's pixels are already upright), the pixel
dimensions are the output's, the colour space is sRGB (the output is converted to it), the software tag names us.
Dropped on purpose: the embedded thumbnail (it shows the original pixels), maker notes (their offsets point into the
original file and cannot be kept valid), offsets into the original (strips, sub-IFDs), Photoshop's private resources
and, unless the owner asks to keep it, the location (GPS, and the place names of XMP and IPTC). Metadata that cannot
be read is dropped, never fatal: each drop is a note the caller logs. docs/imaging.md has the field-by-field table.
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PIL import Image

SOFTWARE = "album-enhance"

# EXIF tags (IFD0 and the Exif IFD).
_ORIENTATION = 0x0112
_SOFTWARE = 0x0131
_IMAGE_WIDTH, _IMAGE_LENGTH = 0x0100, 0x0101
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003
_COLOR_SPACE, _SRGB = 0xA001, 1
_INTEROP_INDEX, _INTEROP_SRGB = 0x0001, "R98"
# Offsets into the original file (or blobs made of them) that mean nothing in ours, and the maker notes whose
# internal offsets we cannot keep valid (exiftool relocates them; a plain rewrite would leave them dangling).
_DROPPED_TAGS = frozenset(
    {
        0x0111,  # StripOffsets
        0x0117,  # StripByteCounts
        0x014A,  # SubIFDs
        0x0201,  # JPEGInterchangeFormat (a thumbnail)
        0x0202,  # JPEGInterchangeFormatLength
        0x02BC,  # XMP inside EXIF: the XMP segment is the one kept
        0x83BB,  # IPTC inside EXIF: likewise
        0x8773,  # an ICC profile inside EXIF: the output carries its own
        0x927C,  # MakerNote
        0xC634,  # DNGPrivateData
        0xEA1C,  # Padding
        0xEA1D,  # OffsetSchema (a maker-note offset fix-up)
    }
)
_MAX_JPEG_SEGMENT = 65533  # what a JPEG APPn segment holds after its length
_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_PHOTOSHOP_HEADER = b"Photoshop 3.0\x00"
_IPTC_RESOURCE = 0x0404
_MAX_XMP_BYTES = 1 << 20  # a larger packet is not a photo's description

# XMP properties, by namespace URI and local name.
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_TIFF = "http://ns.adobe.com/tiff/1.0/"
_EXIF = "http://ns.adobe.com/exif/1.0/"
_XMP = "http://ns.adobe.com/xap/1.0/"
_XMP_NOTE = "http://ns.adobe.com/xmp/note/"
# The output's size goes into these (0: its width, 1: its height), the orientation into tiff:Orientation.
_XMP_SIZES = {
    (_EXIF, "PixelXDimension"): 0,
    (_EXIF, "PixelYDimension"): 1,
    (_TIFF, "ImageWidth"): 0,
    (_TIFF, "ImageLength"): 1,
}
_XMP_STALE = frozenset({(_XMP, "Thumbnails"), (_XMP_NOTE, "HasExtendedXMP")})
# Location in any namespace: GPS (EXIF's and drones'), coordinates, and place names (IPTC Core and Extension,
# Photoshop's city, state and country).
_XMP_LOCATION = re.compile(
    r"^(gps.*|.*(latitude|longitude|altitude).*|location.*|city|state|country|countrycode|countryname|"
    r"sublocation|provincestate|worldregion)$",
    re.IGNORECASE,
)
# IPTC IIM application record: content location code and name, city, sub-location, province/state, country
# code and name.
_IIM_LOCATION = frozenset({26, 27, 90, 92, 95, 100, 101})

_Carry = Callable[[bytes], "bytes | None"]  # one block's rewrite: its bytes in, the output's (or None) out


@dataclass(frozen=True)
class SourceMetadata:
    """The metadata blocks found in a source: EXIF (a TIFF structure), an XMP packet, IPTC IIM datasets."""

    exif: bytes | None = None
    xmp: bytes | None = None
    iptc: bytes | None = None


@dataclass(frozen=True)
class OutputMetadata:
    """What to write into the output: EXIF ("Exif\\0\\0" + TIFF), an XMP packet, IPTC IIM datasets; and a note for
    each thing dropped because it could not be read or kept (for the job's log)."""

    exif: bytes | None = None
    xmp: bytes | None = None
    iptc: bytes | None = None
    notes: tuple[str, ...] = field(default=())


NO_METADATA = OutputMetadata()


def read_metadata(image: Image.Image) -> SourceMetadata:
    """The blocks an opened (not necessarily decoded) image carries, as Pillow and pillow-heif expose them."""
    info = image.info
    exif = info.get("exif")
    xmp = info.get("xmp", info.get("XML:com.adobe.xmp"))
    photoshop = info.get("photoshop")
    iptc = photoshop.get(_IPTC_RESOURCE) if isinstance(photoshop, dict) else None
    return SourceMetadata(
        exif=exif if isinstance(exif, bytes) and exif else None,
        xmp=xmp.encode() if isinstance(xmp, str) else xmp if isinstance(xmp, bytes) and xmp else None,
        iptc=iptc if isinstance(iptc, bytes) and iptc else None,
    )


def carry_over(
    source: SourceMetadata, size: tuple[int, int], keep_location: bool, software: str = SOFTWARE
) -> OutputMetadata:
    """The output's metadata for an upright output of `size` (width, height); what cannot be read is dropped."""
    notes: list[str] = []
    exif = _guarded("EXIF", notes, lambda raw: _carry_exif(raw, size, keep_location, software, notes), source.exif)
    xmp = _guarded("XMP", notes, lambda raw: _carry_xmp(raw, size, keep_location), source.xmp)
    iptc = _guarded("IPTC", notes, lambda raw: _carry_iptc(raw, keep_location), source.iptc)
    return OutputMetadata(exif, xmp, iptc, tuple(notes))


def _guarded(what: str, notes: list[str], carry: _Carry, raw: bytes | None) -> bytes | None:
    if raw is None:
        return None
    try:
        return carry(raw)
    except Exception as exc:  # hostile or broken metadata of any kind: never the image's failure
        notes.append(f"{what} unreadable ({type(exc).__name__}: {str(exc)[:120]}): dropped")
        return None


# EXIF --------------------------------------------------------------------------------------------------------------


def _carry_exif(raw: bytes, size: tuple[int, int], keep_location: bool, software: str, notes: list[str]) -> bytes:
    source = Image.Exif()
    source.load(raw)
    if not source:
        raise ValueError("no readable EXIF entries")
    out = Image.Exif()
    for tag, value in source.items():
        if tag in _DROPPED_TAGS or tag in (_EXIF_IFD, _GPS_IFD):
            continue
        out[tag] = value
    out[_ORIENTATION] = 1
    out[_SOFTWARE] = software
    if _IMAGE_WIDTH in out:
        out[_IMAGE_WIDTH], out[_IMAGE_LENGTH] = size
    if _EXIF_IFD in source:
        exif_ifd = source.get_ifd(_EXIF_IFD)
        if 0x927C in exif_ifd:
            notes.append("maker notes dropped (their offsets cannot be kept valid)")
        sub = {tag: value for tag, value in exif_ifd.items() if tag not in _DROPPED_TAGS and tag != _INTEROP_IFD}
        interop = source.get_ifd(_INTEROP_IFD) if _INTEROP_IFD in exif_ifd else {}
        if interop:
            # The output is sRGB whatever the source was (Adobe RGB says "R03" here, "uncalibrated" below).
            sub[_INTEROP_IFD] = (
                {**interop, _INTEROP_INDEX: _INTEROP_SRGB} if _INTEROP_INDEX in interop else dict(interop)
            )
        sub[_PIXEL_X], sub[_PIXEL_Y] = size
        sub[_COLOR_SPACE] = _SRGB
        out[_EXIF_IFD] = sub
    if keep_location and _GPS_IFD in source:
        gps = source.get_ifd(_GPS_IFD)
        if gps:
            out[_GPS_IFD] = dict(gps)
    data = out.tobytes()
    if len(data) > _MAX_JPEG_SEGMENT:
        raise ValueError(f"{len(data)} bytes, more than one JPEG segment holds")
    return data


# XMP ---------------------------------------------------------------------------------------------------------------


def _carry_xmp(raw: bytes, size: tuple[int, int], keep_location: bool) -> bytes:
    packet = raw.rstrip(b"\x00 \t\r\n")
    if len(packet) > _MAX_XMP_BYTES:
        raise ValueError(f"a {len(packet)}-byte packet")
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:  # never in XMP; the way to entity expansion attacks
        raise ValueError("a document type declaration")
    namespaces: dict[str, str] = {}
    root: ET.Element | None = None
    for event, item in ET.iterparse(io.BytesIO(packet), events=("start-ns", "end")):
        if event == "start-ns":
            prefix, uri = item
            namespaces.setdefault(uri, prefix)
        else:
            root = item
    if root is None:
        raise ValueError("no XML element")
    for description in root.iter(f"{{{_RDF}}}Description"):
        _edit_description(description, size, keep_location)
    for uri, prefix in namespaces.items():
        try:
            ET.register_namespace(prefix, uri)  # so the output keeps the usual prefixes (x:, rdf:, dc:...)
        except ValueError:
            continue  # a prefix ElementTree reserves (ns0...): it writes one of its own
    body = ET.tostring(root, encoding="unicode").encode()
    data = b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>\n" + body + b"\n<?xpacket end='w'?>"
    if len(data) + len(_XMP_HEADER) > _MAX_JPEG_SEGMENT:
        raise ValueError(f"{len(data)} bytes, more than one JPEG segment holds")
    return data


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        uri, _, local = name[1:].partition("}")
        return uri, local
    return "", name


def _edit_description(description: ET.Element, size: tuple[int, int], keep_location: bool) -> None:
    """Properties are attributes or child elements of rdf:Description; each is kept, changed or dropped."""
    for name in list(description.attrib):
        action = _xmp_action(_split(name), keep_location)
        if action == "drop":
            del description.attrib[name]
        elif action is not None:
            description.attrib[name] = _xmp_value(action, size)
    for child in list(description):
        action = _xmp_action(_split(child.tag), keep_location)
        if action == "drop":
            description.remove(child)
        elif action is not None and len(child) == 0:
            child.text = _xmp_value(action, size)


def _xmp_action(name: tuple[str, str], keep_location: bool) -> str | None:
    if name[0] == _RDF or name[0] == "http://www.w3.org/XML/1998/namespace":
        return None
    if name == (_TIFF, "Orientation"):
        return "orientation"
    if name in _XMP_SIZES:
        return "width" if _XMP_SIZES[name] == 0 else "height"
    if name in _XMP_STALE or (not keep_location and _XMP_LOCATION.match(name[1])):
        return "drop"
    return None


def _xmp_value(action: str, size: tuple[int, int]) -> str:
    return {"orientation": "1", "width": str(size[0]), "height": str(size[1])}[action]


# IPTC --------------------------------------------------------------------------------------------------------------


def _carry_iptc(raw: bytes, keep_location: bool) -> bytes | None:
    if len(raw) + 64 > _MAX_JPEG_SEGMENT:
        raise ValueError(f"{len(raw)} bytes, more than one JPEG segment holds")
    kept = [
        dataset
        for record, number, dataset in _iim_datasets(raw)
        if keep_location or record != 2 or number not in _IIM_LOCATION
    ]
    return b"".join(kept) or None


def _iim_datasets(raw: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(record, dataset number, the whole dataset's bytes) of IPTC IIM data; ValueError where it is malformed."""
    position = 0
    while position < len(raw):
        if raw[position] == 0 and not raw[position:].strip(b"\x00"):
            return  # padding
        if raw[position] != 0x1C or position + 5 > len(raw):
            raise ValueError(f"not an IIM dataset at byte {position}")
        record, number = raw[position + 1], raw[position + 2]
        (length,) = struct.unpack(">H", raw[position + 3 : position + 5])
        start = position + 5
        if length & 0x8000:  # an extended dataset: the next (length & 0x7FFF) bytes hold its length
            count = length & 0x7FFF
            if not 1 <= count <= 4:
                raise ValueError("an extended dataset length of more than 4 bytes")
            length = int.from_bytes(raw[start : start + count], "big")
            start += count
        end = start + length
        if end > len(raw):
            raise ValueError("a dataset runs past the end")
        yield record, number, raw[position:end]
        position = end


def photoshop_resource(iptc: bytes) -> bytes:
    """An APP13 payload holding just the IPTC resource (Photoshop's others describe the original file)."""
    padded = iptc + b"\x00" * (len(iptc) % 2)
    return (
        _PHOTOSHOP_HEADER
        + b"8BIM"
        + struct.pack(">H", _IPTC_RESOURCE)
        + b"\x00\x00"
        + struct.pack(">I", len(iptc))
        + padded
    )


# JPEG segments -----------------------------------------------------------------------------------------------------


def jpeg_segments(metadata: OutputMetadata) -> list[bytes]:
    """APP1 (EXIF), APP1 (XMP) and APP13 (IPTC) segments, in that order, for what the output carries."""
    segments = []
    if metadata.exif is not None:
        segments.append(_segment(0xE1, metadata.exif))
    if metadata.xmp is not None:
        segments.append(_segment(0xE1, _XMP_HEADER + metadata.xmp))
    if metadata.iptc is not None:
        segments.append(_segment(0xED, photoshop_resource(metadata.iptc)))
    return segments


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", 2 + len(payload)) + payload
