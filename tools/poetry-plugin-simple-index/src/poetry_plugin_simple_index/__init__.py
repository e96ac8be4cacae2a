"""Poetry plugin: resolve and install PyPI packages through the simple API only.

Poetry's built-in PyPI source asks ``/pypi/<name>/<version>/json`` for every release it locks or
installs. Some package mirrors serve only the simple API (PEP 503 / PEP 691) and byte-range
requests, so plain ``poetry lock`` fails there with "Package X (version) not found".

This plugin keeps Poetry's PyPI source (same name, same URL, same lock file) and swaps the two
methods that call the JSON API for the code Poetry's own legacy (simple) repository uses: release
files from the simple page, dependencies from PEP 658 metadata files or, failing that, the wheel
itself read with range requests. Full PyPI serves the simple API too, so the lock file written is
the same on both; a lock made with the plugin installs with plain Poetry and vice versa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poetry.plugins.application_plugin import ApplicationPlugin
from poetry.repositories.pypi_repository import PyPiRepository

if TYPE_CHECKING:
    from packaging.utils import NormalizedName
    from poetry.console.application import Application
    from poetry.core.constraints.version import Version
    from poetry.core.packages.package import Package
    from poetry.core.packages.utils.link import Link


def _find_links_for_package(self: PyPiRepository, package: Package) -> list[Link]:
    page = self.get_page(package.name)
    return list(page.links_for_version(package.name, package.version))


def _get_release_info(
    self: PyPiRepository, name: NormalizedName, version: Version
) -> dict[str, Any]:
    from poetry.inspection.info import PackageInfo

    self._log(f"Getting info for {name} ({version}) from the simple API", "debug")
    page = self.get_page(name)
    links = list(page.links_for_version(name, version))
    return self._links_to_data(
        links,
        PackageInfo(
            name=name,
            version=version.text,
            summary="",
            requires_dist=[],
            requires_python=None,
            files=[],
            yanked=page.yanked(name, version),
            cache_version=str(self.CACHE_VERSION),
        ),
    )


def patch() -> None:
    """Route PyPiRepository's per-release look-ups through the simple API (idempotent)."""
    PyPiRepository.find_links_for_package = _find_links_for_package  # type: ignore[method-assign]
    PyPiRepository._get_release_info = _get_release_info  # type: ignore[method-assign]


class SimpleIndexPlugin(ApplicationPlugin):
    """Loaded by Poetry at start-up through the ``poetry.application.plugin`` entry point."""

    def activate(self, application: Application) -> None:
        patch()
