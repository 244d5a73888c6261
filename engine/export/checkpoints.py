"""Official checkpoints by name: `engine.export --variant V --checkpoint official`.

Each variant's checkpoint is downloaded from where its publisher serves it: Meta's SAM 2 (July 2024) and
SAM 2.1 (September 2024) files under dl.fbaipublicfiles.com, as Meta's `checkpoints/download_ckpts.sh`
fetches them, and EdgeTAM's from its repository (`checkpoints/edgetam.pt`, as its README links it).

The file streams into a cache folder (`$SAM2_EDGE_CACHE`, default `~/.cache/sam2-edge/checkpoints`) as
`<name>.part`, with a progress bar; an interrupted download resumes from where it stopped (an HTTP Range
request), a transfer shorter than the server's Content-Length is refused, and only a complete file takes
its final name. `$SAM2_EDGE_CHECKPOINT_URL` replaces the base URL of every file (a mirror, a test server):
the file is then `<base>/<file name>`.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ExportError
from engine.modelset import file_sha256

BASE_ENV = "SAM2_EDGE_CHECKPOINT_URL"
CACHE_ENV = "SAM2_EDGE_CACHE"
SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"
SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
EDGETAM_BASE = "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints"
CHUNK = 1 << 20


def official_url(variant: str) -> str:
    """The publisher's URL of a variant's checkpoint (or the mirror's, with $SAM2_EDGE_CHECKPOINT_URL)."""
    if variant == "edgetam":
        base, name = EDGETAM_BASE, "edgetam.pt"
    elif variant.startswith("sam2.1_hiera_"):
        base, name = SAM21_BASE, f"{variant}.pt"
    elif variant.startswith("sam2_hiera_"):
        base, name = SAM2_BASE, f"{variant}.pt"
    else:
        raise ExportError(f"no official checkpoint is known for variant {variant!r}")
    mirror = os.environ.get(BASE_ENV)
    return f"{(mirror or base).rstrip('/')}/{name}"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sam2-edge" / "checkpoints").expanduser()


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    sha256: str
    bytes: int
    resumed_from: int  # bytes already there from an interrupted download (0: a fresh one)
    cached: bool  # the complete file was already in the cache


def fetch_official(variant: str, folder: Path | None = None, progress: bool = True,
                   timeout_s: float = 30.0) -> Downloaded:
    """The variant's official checkpoint in the cache, downloaded (or resumed) when it is not complete."""
    url = official_url(variant)
    folder = folder or cache_dir()
    name = url.rsplit("/", 1)[1]
    final, part = folder / name, folder / (name + ".part")
    if final.is_file():
        return Downloaded(final, url, file_sha256(final), final.stat().st_size, 0, True)
    folder.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "sam2-edge"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - the publisher's https URL
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is already whole: the server has nothing beyond it
            response = None
        else:
            raise ExportError(f"cannot download {url}: HTTP {exc.code} {exc.reason}. {_by_hand(final, url)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ExportError(f"cannot download {url} ({getattr(exc, 'reason', exc)}): offline, or the address cannot "
                          f"be reached. {_by_hand(final, url)}") from exc
    resumed_from = 0
    if response is not None:
        with response:
            if have and response.status == 206:
                resumed_from = have
            else:
                have = 0  # the server sent the whole file: start again
            length = response.headers.get("Content-Length")
            expected = None if length is None else have + int(length)
            _stream(response, part, have, expected, progress, name)
    size = part.stat().st_size
    os.replace(part, final)
    return Downloaded(final, url, file_sha256(final), size, resumed_from, False)


def _stream(response, part: Path, have: int, expected: int | None, progress: bool, name: str) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=expected, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=name)
    got = have
    try:
        with open(part, "ab" if have else "wb") as f:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, urllib.error.URLError) as exc:
                    raise ExportError(f"the download of {name} broke off after {got} bytes ({exc}); run the same "
                                      f"command again to resume it") from exc
                if not block:
                    break
                f.write(block)
                got += len(block)
                if bar is not None:
                    bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    if expected is not None and got != expected:
        raise ExportError(f"the download of {name} ended after {got} of {expected} bytes (Content-Length); run the "
                          f"same command again to resume it")


def _by_hand(final: Path, url: str) -> str:
    return (f"Download it by hand from {url} and put it at {final} (or pass its path: --checkpoint FILE); "
            f"${BASE_ENV} names a mirror")
