"""pytest-nocrud: end-to-end API flows on a real app and real PostgreSQL, a fresh database per test.

Users import from here (``from pytest_nocrud import CrudFlow, AsUser``); the modules behind these
names are internal and may move. The plugin itself is registered through the ``pytest11`` entry point.
"""

from . import _moved
from .app.process import LiveApp
from .app.setups import template_setup
from .errors import (
    AppExited,
    AppStartError,
    BinariesNotFound,
    BuildError,
    FlowDefinitionError,
    FlowFailed,
    HandoffError,
    NocrudError,
    PoolError,
    SerialError,
    ServerError,
    ShardMismatch,
    UsageError,
    WrongDatabaseError,
)
from .flows.auth import (
    AsBearer,
    AsToken,
    AsUser,
    ClientFactory,
    bearer_login,
    csrf_headers,
    csrf_token,
    form_login,
    install_csrf_header,
    session_login,
    token_login,
)
from .flows.baked import bake_login
from .flows.crud import Created, CrudFlow
from .flows.steps import Flow, FlowResult, StepContext, expect_status

__version__ = "0.2.0"

_moved.install()  # 0.1 module paths (pytest_nocrud.crud, .auth, ...) keep working, with a warning

__all__ = [
    "AppExited",
    "AppStartError",
    "AsBearer",
    "AsToken",
    "AsUser",
    "BinariesNotFound",
    "BuildError",
    "ClientFactory",
    "Created",
    "CrudFlow",
    "Flow",
    "FlowDefinitionError",
    "FlowFailed",
    "FlowResult",
    "HandoffError",
    "LiveApp",
    "NocrudError",
    "PoolError",
    "SerialError",
    "ServerError",
    "ShardMismatch",
    "StepContext",
    "UsageError",
    "WrongDatabaseError",
    "bake_login",
    "bearer_login",
    "csrf_headers",
    "csrf_token",
    "expect_status",
    "form_login",
    "install_csrf_header",
    "session_login",
    "template_setup",
    "token_login",
]
