"""Shared fixtures: the real benchmark data (read in place) and a throwaway model cache.

Data come from env OPTICAL_DATA, else ../shared/data next to the repository. Missing data
fail the tests that need them with a message saying how to get the data — never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# One real PostgreSQL server per test session, a fresh database per test (tests/pg_fixtures.py);
# a real one-node Slurm, started only for the tests that ask for it (tests/slurm_fixtures.py).
pytest_plugins = ["tests.pg_fixtures", "tests.slurm_fixtures"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"

# Engine code (and worker subprocesses) find the data the same way the fixture does.
os.environ.setdefault("OPTICAL_DATA", str(DEFAULT_DATA))

# Converted/built models go to a per-session folder unless the caller chose one, so tests never
# write into the user's ~/.cache and always exercise the build path.
_OWN_CACHE = None
if not os.environ.get("OPTICAL_CACHE"):
    _OWN_CACHE = tempfile.mkdtemp(prefix="optical-test-cache-")
    os.environ["OPTICAL_CACHE"] = _OWN_CACHE


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data folder (MLQA-R, XQuAD-R, XQuAD, Tatoeba), checked to exist."""
    path = Path(os.environ.get("OPTICAL_DATA") or DEFAULT_DATA)
    needed = [path / "mlqa-r" / "en.json", path / "xquad-r" / "en.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.fail(
            f"benchmark data not found ({', '.join(missing)}): set OPTICAL_DATA to the data folder "
            "or run `optical data download --dest DIR`",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def tiny_encoder(data_dir: Path):  # -> engine.models.encoders.Encoder
    """The seconds-fast random BERT (`embedded:tiny-random`) on CPU, built once per session."""
    from engine.models.encoders import load_encoder

    return load_encoder("embedded:tiny-random", device="cpu", max_length=64)


@pytest.fixture
def one_torch_thread():
    """Tests on the tiny model or small OT solves: their ops are far too small to gain from
    intra-op threads, and on a shared CPU spinning threads make every op several times slower."""
    import torch  # here, so that collecting the suite does not import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def db(seeded: tuple[Path, dict[str, int]], tmp_path: Path) -> Path:
    """A private copy per test of the `seeded` database (path, ids by role) that the module or
    folder defines, built once: actions write to the copy."""
    copy = tmp_path / "experiments.db"
    shutil.copy(seeded[0], copy)
    return copy
