"""The cluster profiles against the installed SLURM executor plugin, without a cluster: every key
of profiles/local and profiles/slurm (the options profiles/slurm ships commented out included) is
one Snakemake or the plugin accepts, pyproject's version floor covers the plugin settings used,
Fig. 5 runs share submissions, and GPUs are requested as `gpu` or as `gres`."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import job_resources, tiny

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "profiles/slurm"
LOCAL = REPO / "profiles/local"
OVERRIDE = REPO / "tests/slurm/profile"
PLUGIN_PREFIX = "slurm-"
# the plugin release that introduced each ExecutorSettings field a profile uses (its CHANGELOG
# and `git log -S`): pyproject's floor must be at least the newest of them
SETTING_SINCE = {"status_command": (2, 0, 1), "init_seconds_before_status_checks": (0, 1, 0),
                 "requeue": (0, 11, 0), "efficiency_report": (1, 5, 0),
                 "efficiency_report_path": (1, 5, 0)}
# resources Snakemake itself knows; any other resource in a profile must be one the plugin reads
SNAKEMAKE_RESOURCES = {"runtime", "mem_mb", "mem", "disk_mb", "disk", "tmpdir", "threads"}
pytestmark = pytest.mark.slow


def snakemake(workdir, *args):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def commented_options(text: str) -> dict:
    """The options profiles/slurm documents as comments for the user to enable."""
    found: dict = {}
    status = re.search(r"^#.*\b(slurm-status-command: *\S+)", text, re.M)
    groups = re.search(r"^#\s*(group-components: *\[.*\])", text, re.M)
    block = re.search(r"^# set-resources:\n((?:#   .*\n)+)", text, re.M)
    assert status and groups and block, "a documented option of profiles/slurm went missing"
    found |= yaml.safe_load(status[1]) | yaml.safe_load(groups[1])
    found["set-resources"] = yaml.safe_load(re.sub(r"^# ", "", block[1], flags=re.M))
    return found


def slurm_profile_all_options(tmp_path) -> Path:
    """A copy of profiles/slurm with its commented options enabled."""
    profile = yaml.safe_load((SLURM / "config.yaml").read_text())
    profile |= commented_options((SLURM / "config.yaml").read_text())
    d = tmp_path / "profile-all"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(profile))
    return d


def assert_dry_run_ok(out):
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    assert "unrecognized arguments" not in text and "This was a dry-run" in text, text[-6000:]
    return text


# -- 1. every key is accepted; the version floor covers them ----------------------------------
def test_every_plugin_setting_of_the_profiles_is_an_executor_settings_field():
    from snakemake_executor_plugin_slurm import ExecutorSettings

    fields = {f.name for f in dataclasses.fields(ExecutorSettings)}
    slurm_text = (SLURM / "config.yaml").read_text()
    profiles = [yaml.safe_load(slurm_text) | commented_options(slurm_text),
                yaml.safe_load((LOCAL / "config.yaml").read_text()),
                yaml.safe_load((OVERRIDE / "config.yaml").read_text())]
    used = set()
    for profile in profiles:
        for key in profile:
            if key.startswith(PLUGIN_PREFIX):
                name = key[len(PLUGIN_PREFIX):].replace("-", "_")
                assert name in fields, f"{key}: not a setting of the installed plugin"
                used.add(name)
    assert "status_command" in used
    # pyproject's floor is at least the release that introduced each setting used
    assert used <= SETTING_SINCE.keys(), f"add when these appeared: {used - SETTING_SINCE.keys()}"
    pyproject = (REPO / "pyproject.toml").read_text()
    floor = re.search(r'"snakemake-executor-plugin-slurm>=([0-9.]+)"', pyproject)
    assert floor, "pyproject.toml: no floor for snakemake-executor-plugin-slurm"
    assert tuple(int(x) for x in floor[1].split(".")) >= max(SETTING_SINCE[n] for n in used)


def test_every_resource_of_the_slurm_profile_is_read_by_the_plugin():
    import snakemake_executor_plugin_slurm as plugin

    source = "".join(p.read_text() for p in Path(plugin.__file__).parent.glob("*.py"))
    text = (SLURM / "config.yaml").read_text()
    profile = yaml.safe_load(text) | commented_options(text)
    names = set(profile["default-resources"])
    for rule_resources in profile["set-resources"].values():
        names |= set(rule_resources)
    for name in names - SNAKEMAKE_RESOURCES:
        assert f'"{name}"' in source, f"resource {name}: the installed plugin never reads it"


def test_both_profiles_with_every_documented_option_pass_a_dry_run(tmp_path):
    config = tiny(tmp_path / "w", train={"device": "cuda"}) / "config.yaml"
    for profile in (LOCAL, slurm_profile_all_options(tmp_path)):
        out = snakemake(config.parent, "--profile", str(profile), "-n", "--configfile",
                        str(config))
        text = assert_dry_run_ok(out)
        if profile != LOCAL:  # the commented gpu_model reaches the cell rules
            assert all("gpu_model=a100" in line for line in job_resources(text)["train"])


# -- 3. a GPU as `gpu` or as `gres` -------------------------------------------------------------
@pytest.mark.parametrize("request_as", ["gpu", "gres"])
def test_gpu_jobs_ask_for_their_gpu_as_the_config_says(tmp_path, request_as):
    config = tiny(tmp_path, train={"device": "cuda"},
                  resources={"gpu_request": request_as}) / "config.yaml"
    text = assert_dry_run_ok(snakemake(tmp_path, "--profile", str(SLURM), "-n", "--configfile",
                                       str(config)))
    res = job_resources(text)
    want, other = ((r"\bgpu=1\b", r"\bgres=") if request_as == "gpu"
                   else (r"\bgres=gpu:1\b", r"\bgpu="))
    for rule in ("train", "min_train", "min_test", "measure"):
        assert len(res[rule]) == 2, rule
        for line in res[rule]:
            assert re.search(want, line) and not re.search(other, line), line
    for rule in ("gather", "plots", "prepare_data"):
        assert not any(re.search(r"\bg(pu|res)=", line) for line in res[rule]), rule


def test_fig5_runs_ask_for_a_gres_gpu_too(tmp_path):
    """The paper config's Fig. 5 runs (train.device cuda) with gpu_request: gres."""
    config = yaml.safe_load((REPO / "configs/paper-cifar10.yaml").read_text())
    config["resources"] = {**config.get("resources", {}), "gpu_request": "gres"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    text = assert_dry_run_ok(snakemake(tmp_path, "--profile", str(SLURM), "-n", "fig5",
                                       "--configfile", str(tmp_path / "config.yaml")))
    res = job_resources(text)
    for rule in ("fig5_stage1", "fig5_stage2", "fig5_shift"):
        assert res[rule] and all("gres=gpu:1" in line and not re.search(r"\bgpu=", line)
                                 for line in res[rule]), rule


def test_the_plugin_turns_both_requests_into_sbatch_options():
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.utils import set_gres_string

    def job(**resources):
        return SimpleNamespace(resources=SimpleNamespace(get=resources.get, **resources))

    assert set_gres_string(job(gres="gpu:1")).strip() == "--gres=gpu:1"
    assert set_gres_string(job(gpu=1)).strip() == "--gpus=1"
