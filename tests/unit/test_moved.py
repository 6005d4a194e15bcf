"""0.1 import paths keep working for a release, each with a DeprecationWarning naming the new home."""

from __future__ import annotations

import importlib
import sys

import pytest

import pytest_nocrud
from pytest_nocrud._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_new_module_with_a_warning(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {MOVED[old]} .* goes away in 0\.3\.0"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old]), "an alias, not a second copy with its own state"


def test_from_imports_of_the_old_layout_work() -> None:
    for name in ("pytest_nocrud.crud", "pytest_nocrud.auth"):
        sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning):
        from pytest_nocrud.crud import CrudFlow  # noqa: PLC0415 - the import under test
    with pytest.warns(DeprecationWarning):
        from pytest_nocrud.auth import AsUser, install_csrf_header  # noqa: PLC0415
    assert CrudFlow is pytest_nocrud.CrudFlow and AsUser is pytest_nocrud.AsUser
    assert install_csrf_header is pytest_nocrud.install_csrf_header


def test_the_old_flows_module_names_still_resolve() -> None:
    with pytest.warns(DeprecationWarning, match="pytest_nocrud.flows.Flow moved to"):
        from pytest_nocrud.flows import Flow  # noqa: PLC0415
    assert Flow is pytest_nocrud.Flow
    with pytest.raises(ImportError):
        from pytest_nocrud.flows import NoSuchName  # type: ignore[attr-defined]  # noqa: F401, PLC0415


def test_an_unknown_old_path_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pytest_nocrud.no_such_module")


def test_the_version_says_the_import_paths_moved() -> None:
    assert pytest_nocrud.__version__ == "0.2.0"


def test_names_of_a_module_that_became_a_package_still_resolve() -> None:
    expected = "pytest_nocrud.app.LiveApp moved to pytest_nocrud.app.process"
    with pytest.warns(DeprecationWarning, match=expected):
        from pytest_nocrud.app import LiveApp  # noqa: PLC0415
    assert LiveApp is pytest_nocrud.LiveApp
