"""The built wheel is a working product on its own: installed without ``-e`` and run from a
folder outside the repository, it finds its shipped search spaces and tunes.

The repository's top-level ``search_spaces/`` is out of reach there, so a wheel that did not
carry them as ``regtune/search_spaces/`` fails with "no space named 'default'".
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of the working tree (pip fetches the build backend as it would for a user)."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (built,) = out.glob("regtune-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel (installed without ``-e`` and without dependencies);
    torch, Optuna, MLflow and the rest come from this interpreter's site-packages through a
    ``.pth`` line, which puts them after the venv's own, so ``regtune`` is the wheel's."""
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    Path(purelib, "_regtune_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"installing the wheel failed:\n{done.stdout}\n{done.stderr}"
    return env_dir


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["COLUMNS"] = "200"
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_carries_the_search_spaces_and_py_typed(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert SHIPPED, "the repository has no search_spaces/*.yaml"
    missing = [f"regtune/search_spaces/{name}" for name in SHIPPED if f"regtune/search_spaces/{name}" not in names]
    assert not missing, f"wheel lacks {missing}"
    assert "regtune/py.typed" in names
    assert not any(n.startswith("search_spaces/") for n in names), "spaces must sit inside the package"


def test_installed_wheel_lists_spaces_and_tunes_outside_the_repo(venv: Path, tmp_path: Path) -> None:
    where = _run([venv / "bin" / "python", "-c", "import regtune; print(regtune.__file__)"], tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), f"regtune imported from {where.stdout.strip()}"

    spaces = _run([venv / "bin" / "regtune", "spaces"], tmp_path)
    assert spaces.returncode == 0, spaces.stderr
    for name in SHIPPED:
        assert Path(name).stem in spaces.stdout

    module = _run([venv / "bin" / "python", "-m", "regtune", "spaces"], tmp_path)
    assert module.returncode == 0 and "default" in module.stdout, module.stderr

    tuned = _run([venv / "bin" / "regtune", "tune", "iris", "--trials", "2"], tmp_path)
    assert tuned.returncode == 0, f"stdout:\n{tuned.stdout}\nstderr:\n{tuned.stderr}"
    assert "trials: 2 complete" in tuned.stdout
    assert (tmp_path / "regtune.journal").is_file()
