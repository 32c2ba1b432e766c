"""Repository metadata: the license (file and pyproject) and the workflow-catalog file."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_mit_license_in_the_file_and_in_pyproject():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 shiftcurv authors" in text
    pyproject = (REPO / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    project = pyproject[pyproject.index("[project]"):]
    assert re.search(r'^license = "MIT"$', project, re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', project, re.M)


def test_workflow_catalog_file_has_the_documented_keys_and_true_claims():
    meta = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = meta["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment"}
    flags = usage["mandatory-flags"]
    assert set(flags) == {"desc", "flags"} and len(flags["desc"]) > 50
    profile = re.fullmatch(r"--profile (\S+)", flags["flags"])
    assert profile and (REPO / profile[1] / "config.yaml").exists(), flags["flags"]
    sdm = usage["software-stack-deployment"]
    assert set(sdm) == {"conda", "apptainer", "apptainer+conda", "report"}
    assert all(isinstance(v, bool) for v in sdm.values())
    # report: true only while a test builds the report
    assert sdm["report"] == ('"--report"' in (REPO / "tests/test_workflow.py").read_text())
    # conda: true only with a tested `--sdm conda` (there is none: README says why)
    assert sdm["conda"] is False and sdm["apptainer"] is False


def test_no_rule_declares_a_conda_environment_or_container():
    """What the catalog file and README ("Software environment") say: the rules run in the
    environment snakemake runs in; a directive naming another would be untested."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]
    assert len(files) >= 10
    declaring = [f.name for f in files
                 if re.search(r"^\s*(conda|container):", f.read_text(), re.M)]
    assert declaring == [] and not (REPO / "workflow/envs").exists()
