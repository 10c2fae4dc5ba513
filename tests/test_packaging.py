"""What a user's site-packages receives: the two packages, and the files they need at run time."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out),
                           str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("energyctl-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_energy_and_energyctl_and_nothing_else(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"energy", "energyctl"}


def test_the_wheel_carries_what_the_installed_tool_reads_at_run_time(wheel):
    names = set(wheel.namelist())
    assert "energy/settings.py" in names
    assert "energyctl/bench/wrk_consume.lua" in names
    assert any(name.startswith("energy/migrations/0001_") for name in names)
    assert any(name.startswith("energyctl/management/commands/replay_keys") for name in names)
    assert not any(name.startswith(("benchmarks/", "tests/")) or name in ("settings.py", "manage.py")
                   for name in names)
