"""The workflow as a Snakemake `module` of another project: a Snakefile elsewhere imports this
repository's Snakefile with its own config (in the standard config/config.yaml place, not
this repository's config.yaml) and runs the tiny sweep end to end with the installed package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

HOST_SNAKEFILE = f"""\
configfile: "config/config.yaml"


module shiftcurv:
    snakefile:
        "{REPO / "Snakefile"}"
    config:
        config


use rule * from shiftcurv as shiftcurv_*
"""


def host_project(path: Path) -> Path:
    """Another project: its own Snakefile and config/config.yaml (the tiny sweep), no src/."""
    tiny(path / "config")  # writes config/config.yaml
    (path / "Snakefile").write_text(HOST_SNAKEFILE)
    return path


def run(host: Path, *args, python_prelude: str = ""):
    """snakemake in the host project (its Snakefile found there), the venv's bin on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    code = (f"{python_prelude}import sys; from snakemake.cli import main; "
            f"sys.argv = ['snakemake', *{list(args)!r}]; main()")
    return subprocess.run([sys.executable, "-c", code], cwd=host, env=env, capture_output=True,
                          text=True, timeout=900)


def test_the_tiny_sweep_runs_as_a_module_of_another_project(tmp_path):
    import xarray as xr

    host = host_project(tmp_path / "host")
    out = run(host, "--cores", "2", "--profile", str(REPO / "profiles/local"))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    # the module's rules, under the host's prefix, ran with the host's config: its 2 cells
    assert "rule shiftcurv_train:" in text and "rule shiftcurv_measure:" in text
    with xr.open_dataset(host / "results/sweep.nc") as ds:
        assert list(ds["temperature"].values) == [1e-3, 4e-3]
        assert (ds["status"].values == "ok").all() and ds["c_test"].notnull().all()
        config = yaml.safe_load(ds.attrs["config"])
    assert config["datasets"] == {"gaussian-teacher": {"n_train": 256, "n_test": 128}}
    assert (host / "results/synthetic.nc").exists()
    assert len(list((host / "results/figures").glob("*.png"))) >= 4
    assert not (host / "config.yaml").exists() and not (host / "src").exists()


def test_without_the_package_the_workflow_says_so_in_one_line(tmp_path):
    """Nothing next to the Snakefile is put on sys.path: a missing package is named."""
    host = host_project(tmp_path / "host")
    out = run(host, "-n", "--cores", "1",
              python_prelude="import sys; sys.modules['shiftcurv'] = None; ")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "the shiftcurv package is not importable here: install it" in text, text[-3000:]
