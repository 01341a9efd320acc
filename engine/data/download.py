"""Fetch the official data releases into the layout `engine.data.loaders` reads (`optical data
download`).

Each file comes from a pinned commit of its origin repository and is verified against the
SHA-256 of the copy the benchmark numbers were produced with, so a moved or edited upstream
file is an error rather than a silent change of the benchmark.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import DataMissing

_RAW = "https://raw.githubusercontent.com"
# MLQA-R lives only in an older commit of LAReQA (later commits renamed the folder).
_MLQA_R = f"{_RAW}/google-research-datasets/lareqa/354d67d1cd066854cdfbf5ad0e6105528976141d/mlqa-r"
_XQUAD_R = (f"{_RAW}/google-research-datasets/lareqa/9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c"
            "/xquad-r")
_XQUAD = f"{_RAW}/google-deepmind/xquad/60cac411649156efb6aab9dd4c9cde787a2c0345"
_TATOEBA = f"{_RAW}/facebookresearch/LASER/74bc6ae7ffb7cba670fe0f428d0ede9f666fb821/data/tatoeba/v1"

# Relative path in the data folder -> SHA-256 of the file the published counts were checked on.
CHECKSUMS: dict[str, str] = {
    "mlqa-r/ar.json": "2132fbc03208535c0fe01f2e2c5121d06f9c2aa799af93b0a719dbc105bdf137",
    "mlqa-r/de.json": "ce9454dc5aa6f2d85c23cd6e49cb367fbb7c4c6e62d7f71e355c6b5dae4d0886",
    "mlqa-r/en.json": "fedd9a5cc0848dda80caf84aa36f482adaae230526a3f6e9e86926a93ef3b1e4",
    "mlqa-r/es.json": "70ecba276b8c96a692b120693a595d076ce94ad21d4b28311538a9fcbfe0f9d7",
    "mlqa-r/hi.json": "4dd0fb3c06f737a5481d705bc1dcac7876712a5815c9265908fbb3a0696cb654",
    "mlqa-r/vi.json": "9d3baff6ba03e6793b25594217265ea59a136b9733833dca8a9582a84a78ff85",
    "mlqa-r/zh.json": "57f01d2fff50cf3392805635b01445339f225ad5bf28ba8443b12f8dbd1e69dc",
    "xquad-r/ar.json": "c52922d3b8ac1ae03ed5ac38647ad59870dca3dda2beefe18ecdc30729acb69d",
    "xquad-r/de.json": "16fb0f4bf4916154b585a20c24c66074591c9718a1affe764ff4697572328949",
    "xquad-r/en.json": "7b0954f39297c27a31fef610f0883337dd2907fa8699151dc922afdd0fa12ffe",
    "xquad-r/es.json": "f8e836b2d91009c4363e04315f7ede363eedbbb49c67dda60de6c4aa782f58de",
    "xquad-r/hi.json": "ea45ba8ae4513d1533b222bebdc02a90bc319c055d3aeea68584a053d2e92872",
    "xquad-r/vi.json": "e35926bf5cc6fc6ecbdfca49467aabeb454f08d152d7818143a906bd31dde995",
    "xquad-r/zh.json": "80c2cde7b9c2fb134c303cbb52f2ba396ead9eb0014aec43993543d2ba9e93ed",
    "xquad/xquad.ar.json": "abdabd7afed5c635d99cca0f3f0d0c9d9ed0bc77451e963c2e4e0638c29e486d",
    "xquad/xquad.de.json": "990b5d746746ed65ed4702ea5f35f99ffa4e2f1c390c07d003642acd937916f9",
    "xquad/xquad.en.json": "e4c57d1c9143aaa1c5d265ba5987a65f4e69528d2a98f29d6e75019b10344f29",
    "xquad/xquad.es.json": "dcbae93ec3a9f4b9e78fd834a171d6f96c1a875e10e15b7530b7e4ef4971e37e",
    "xquad/xquad.hi.json": "df2cce3532b37e9beb8979704b5c9a4bf874358f105395a298b89427b43b9d24",
    "xquad/xquad.vi.json": "f619a1eb11fb42d3ab0834259e488a65f585447ef6154437bfb7199d85161a04",
    "xquad/xquad.zh.json": "691d0b3359bc6b8faa8de931dfdfe21d50a65861ae348e32a0d1a0190b0c8835",
    "tatoeba-laser/tatoeba.ara-eng.ara":
        "e67a0ae072b79cd9e8eb09f166c3bc0b23488d39f5720f2ee0a8350ae17b719f",
    "tatoeba-laser/tatoeba.ara-eng.eng":
        "3c11838c963f598a52dcf2f452b666353538257001db5c59c3a5f54a999b336b",
    "tatoeba-laser/tatoeba.cmn-eng.cmn":
        "965d033966fcd186c89741ad49ab4b0a0b2bbd33e02666635ff3b2be23c1ac1f",
    "tatoeba-laser/tatoeba.cmn-eng.eng":
        "29ba36232488f5806aceccac57c59c5e750ddd08edb40eef417e3ada9ff9a239",
    "tatoeba-laser/tatoeba.deu-eng.deu":
        "edfa6f75a42554df388f45891735d5e4214158a99def4b73b5908af4a3054551",
    "tatoeba-laser/tatoeba.deu-eng.eng":
        "eb9cc83a42f2c4b22f310d05311207e41abb56c2a084666cac3ee0f84d2d0b84",
    "tatoeba-laser/tatoeba.hin-eng.eng":
        "adfce2269a55dbac69b25c0f4f6eb89e0f9383165485925a2e042e61b9480562",
    "tatoeba-laser/tatoeba.hin-eng.hin":
        "15e4fb0a394be4438319f1d6955d1aea226e2a8c5ad38798b23b76ae43d742ed",
    "tatoeba-laser/tatoeba.spa-eng.eng":
        "89e4470f4572040b1ca94b3edad97dcd8bd2f0141f072e12933b8659dadf917d",
    "tatoeba-laser/tatoeba.spa-eng.spa":
        "f9628cea40481e8251f0999718bd893cff0f261752f5e526b3bc20284e2ca018",
    "tatoeba-laser/tatoeba.vie-eng.eng":
        "a1f60bd8ae6c42224a4c050d2aa1ff4242d14827d64d7831e96ecf2b2c367f5f",
    "tatoeba-laser/tatoeba.vie-eng.vie":
        "6dbb02d778b0bfc8678cd85f87db76de55dd7e409a26fe32ad42d50e0f1fff77",
}


def source_url(rel: str) -> str:
    """The official URL of one file of the layout (e.g. "mlqa-r/ar.json")."""
    folder, name = rel.split("/", 1)
    base = {"mlqa-r": _MLQA_R, "xquad-r": _XQUAD_R, "xquad": _XQUAD,
            "tatoeba-laser": _TATOEBA}[folder]
    return f"{base}/{name}"


def planned_files() -> list[tuple[str, str, str]]:
    """(relative path, URL, sha256) for every file `optical data download` fetches."""
    return [(rel, source_url(rel), digest) for rel, digest in sorted(CHECKSUMS.items())]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _chunks(url: str, timeout: float) -> Iterator[bytes]:
    req = urllib.request.Request(url, headers={"User-Agent": "optical-tui data download"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        yield from iter(lambda: resp.read(1 << 16), b"")


def download(
    dest: Path,
    *,
    force: bool = False,
    timeout: float = 60.0,
    on_file: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Download every missing (or, with `force`, every) file into `dest`; returns the fetched paths.

    A file is written to a temporary name, checked against its SHA-256 and only then renamed
    into place, so an interrupted or corrupted download never looks like valid data.
    `on_file(rel, state)` reports "skipped" (already present and verified) or "fetched".
    """
    fetched: list[str] = []
    for rel, url, digest in planned_files():
        target = dest / rel
        if not force and target.is_file() and sha256_file(target) == digest:
            if on_file:
                on_file(rel, "skipped")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(url, timeout):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise DataMissing(f"checksum mismatch for {url}: got {h.hexdigest()}, expected "
                                  f"{digest}")
            os.replace(tmp, target)
        except (urllib.error.URLError, OSError) as exc:
            raise DataMissing(f"could not download {url}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        fetched.append(rel)
        if on_file:
            on_file(rel, "fetched")
    return fetched
