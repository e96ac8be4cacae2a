"""The workspace itself: dependency groups, the lock, the simple-API Poetry plugin, make help."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "poetry.lock").read_text())
MODULE_GROUPS = ["foundations", "cnn", "detection", "sequence", "generative", "modern"]
OTHER_GROUPS = ["notebooks", "tracking", "dev"]


def test_every_group_is_declared_for_poetry_and_pep735() -> None:
    pep735 = PYPROJECT["dependency-groups"]
    poetry_groups = PYPROJECT["tool"]["poetry"]["group"]
    for g in MODULE_GROUPS + OTHER_GROUPS:
        assert pep735.get(g), f"group {g} missing or empty in [dependency-groups]"
        assert poetry_groups[g]["optional"] is True, f"group {g} must be optional"
    assert {"papermill", "jupyterlab", "ipykernel", "nbstripout"} <= {
        re.split(r"[<>=!~ ]", r)[0] for r in pep735["notebooks"]
    }
    assert any(r.startswith("wandb") for r in pep735["tracking"])


def test_lock_matches_pyproject_and_covers_every_group() -> None:
    locked = {p["name"] for p in LOCK["package"]}
    for group, reqs in PYPROJECT["dependency-groups"].items():
        for r in reqs:
            name = re.split(r"[<>=!~;\[ ]", r)[0].lower()
            assert name in locked, f"{name} (group {group}) is not in poetry.lock: run `make lock`"
    main = {p["name"] for p in LOCK["package"] if "main" in p.get("groups", [])}
    assert {"torch", "numpy", "torchvision", "mlxtend"} <= main


ENVIRONMENTS = [
    {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": m,
        "python_version": v,
        "python_full_version": f"{v}.0",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    for m in ("x86_64", "aarch64")
    for v in ("3.10", "3.11", "3.12", "3.13")
] + [
    {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "platform_machine": "arm64",
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    },
    {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "os_name": "nt",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    },
]


@pytest.mark.parametrize(
    "env",
    ENVIRONMENTS,
    ids=lambda e: f"{e['platform_system']}-{e['platform_machine']}-py{e['python_version']}",
)
def test_one_version_of_every_distribution_per_environment(env: dict[str, str]) -> None:
    """Two versions of one package installed into one folder (nvidia-cublas did) segfault torch."""
    seen: dict[str, list[str]] = {}
    for p in LOCK["package"]:
        marker = p.get("markers")
        if isinstance(marker, dict):  # per-group markers (lock 2.1)
            applies = any(Marker(m).evaluate(env) for m in marker.values())
        else:
            applies = marker is None or Marker(marker).evaluate(env)
        if applies:
            seen.setdefault(p["name"], []).append(p["version"])
    dupes = {n: v for n, v in seen.items() if len(v) > 1}
    assert not dupes, f"several versions of one distribution would be installed together: {dupes}"


def test_cuda_libraries_are_pinned_to_torchs_versions() -> None:
    versions = {
        p["name"]: p["version"]
        for p in LOCK["package"]
        if p["name"] in ("torch", "nvidia-cublas", "nvidia-cuda-nvrtc")
    }
    pins = {
        r.split("==")[0]: r.split("==")[1].split(";")[0]
        for r in PYPROJECT["project"]["dependencies"]
        if r.startswith("nvidia-")
    }
    for name, pinned in pins.items():
        assert versions[name] == pinned


def test_installed_environment_has_single_versions_and_torch_imports() -> None:
    from importlib import metadata

    names: dict[str, int] = {}
    for dist in metadata.distributions():
        n = (dist.metadata["Name"] or "").lower().replace("_", "-")
        names[n] = names.get(n, 0) + 1
    assert not {n for n, k in names.items() if k > 1}, "a distribution is installed twice"
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.ones(2).sum().item())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr[-2000:]


def test_no_registry_host_names_in_the_repository() -> None:
    hosts = ["pypi" + ".org", "files." + "pythonhosted.org", "download." + "pytorch.org"]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for rel in tracked:
        path = ROOT / rel
        if rel == "poetry.lock" or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{rel}: {h}" for h in hosts if h in text]
    assert not offenders, offenders


# --- the simple-API Poetry plugin, against a local index that has no JSON API ------------------


def _poetry_python() -> Path:
    candidates = [
        os.environ.get("POETRY", ""),
        str(ROOT / ".tools/poetry/bin/poetry"),
        shutil.which("poetry") or "",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            first = Path(c).read_text(errors="ignore").splitlines()[0]
            if first.startswith("#!"):
                return Path(first[2:].strip().split()[0])
    pytest.fail(
        "no Poetry found: run `make poetry` (the Makefile installs a pinned one into .tools/)"
    )


def _wheel(name: str, version: str, requires: list[str]) -> tuple[bytes, str]:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: demo\nRequires-Python: >=3.8\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    buf = io.BytesIO()
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{dist}/METADATA", meta)
        z.writestr(
            f"{dist}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{dist}/RECORD", "")
    return buf.getvalue(), meta


@pytest.fixture
def simple_only_index():
    """A local index serving only the simple API (PEP 691 JSON) and PEP 658 metadata files."""
    wheel, meta = _wheel("demo-pkg", "1.0", ["six>=1.0"])
    fname = "demo_pkg-1.0-py3-none-any.whl"
    files: dict[str, bytes] = {f"/files/{fname}": wheel, f"/files/{fname}.metadata": meta.encode()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self.path.rstrip("/") == "/simple/demo-pkg":
                body = json.dumps(
                    {
                        "meta": {"api-version": "1.1"},
                        "name": "demo-pkg",
                        "versions": ["1.0"],
                        "files": [
                            {
                                "filename": fname,
                                "url": f"{base}/files/{fname}",
                                "hashes": {"sha256": hashlib.sha256(wheel).hexdigest()},
                                "requires-python": ">=3.8",
                                "core-metadata": {
                                    "sha256": hashlib.sha256(meta.encode()).hexdigest()
                                },
                            }
                        ],
                    }
                ).encode()
                self._send(200, body, "application/vnd.pypi.simple.v1+json")
            elif self.path in files:
                self._send(200, files[self.path], "application/octet-stream")
            else:  # includes /pypi/<name>/<version>/json: this mirror has no JSON API
                self._send(404, b"not found", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


PLUGIN_CHECK = r"""
import sys
from poetry.core.constraints.version import Version
from poetry.repositories.exceptions import PackageNotFoundError
from poetry.repositories.pypi_repository import PyPiRepository
import poetry_plugin_simple_index as plugin

url = sys.argv[1]
plain = PyPiRepository(url=url, disable_cache=True)
try:
    plain.package("demo-pkg", Version.parse("1.0"))
    print("PLAIN-WORKED")
except PackageNotFoundError:
    print("PLAIN-FAILS")
plugin.patch()
repo = PyPiRepository(url=url, disable_cache=True)
pkg = repo.package("demo-pkg", Version.parse("1.0"))
print("REQUIRES", sorted(str(d) for d in pkg.requires))
print("LINKS", len(repo.find_links_for_package(pkg)))
print("FILES", len(pkg.files))
"""


def test_poetry_plugin_resolves_through_the_simple_api(simple_only_index: str) -> None:
    python = _poetry_python()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools/poetry-plugin-simple-index/src")}
    out = subprocess.run(
        [str(python), "-c", PLUGIN_CHECK, simple_only_index],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PLAIN-FAILS" in out.stdout, (
        "without the plugin Poetry should fail on a simple-only index"
    )
    assert "REQUIRES ['six (>=1.0)']" in out.stdout, out.stdout
    assert "LINKS 1" in out.stdout and "FILES 1" in out.stdout, out.stdout


def test_make_help_lists_every_target() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    makefiles = [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]
    targets = set()
    for mf in makefiles:
        targets |= set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_%-]*):(?!=)", mf.read_text(), re.M))
    required = {
        "help",
        "install",
        "install-all",
        "jupyter",
        "test",
        "test-lib",
        "test-notebooks",
        "run",
        "lint",
        "format",
        "strip",
        "lock",
        "doctor",
        "clean",
        "bench",
    }
    assert required <= targets
    listed = set(re.findall(r"^\s*(?:\x1b\[\d+m)?([a-zA-Z][a-zA-Z0-9_%-]*)", out.stdout, re.M))
    missing = sorted(t for t in targets if t not in listed)
    assert not missing, f"targets without a '## description' (not in make help): {missing}"
