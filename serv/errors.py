"""Every error a client can receive, each carrying its JSON-RPC code (contract.md § Errors).

    DynalauncherError              base; `code` is the JSON-RPC error code
    ├── BadParam          -32602   a param has the wrong type or value (the message names it)
    ├── JobNotFound         1001
    ├── InvalidState        1002   not allowed in the job's current status, or workdir busy
    ├── UnknownSolver       1003   no such profile, or its executable is missing
    ├── InputRejected       1004   input missing, not a file, or outside the allowed roots
    ├── ExceedsMachine      1005   more cores (or licences) than this machine has
    ├── BackendDown         1006
    └── NotAuthorised       1007

ConfigError is separate: it stops the daemon at start and never reaches a client.
"""

from __future__ import annotations

from typing import ClassVar


class DynalauncherError(Exception):
    """Base of every error a client can receive; `code` is its JSON-RPC error code."""

    code: ClassVar[int] = -32603


class BadParam(DynalauncherError):
    code = -32602


class JobNotFound(DynalauncherError):
    code = 1001


class InvalidState(DynalauncherError):
    code = 1002


class UnknownSolver(DynalauncherError):
    code = 1003


class InputRejected(DynalauncherError):
    code = 1004


class ExceedsMachine(DynalauncherError):
    code = 1005


class BackendDown(DynalauncherError):
    code = 1006


class NotAuthorised(DynalauncherError):
    code = 1007


class ConfigError(Exception):
    """A bad configuration file or flag; the message names the key and the file."""


class StoreUnavailable(Exception):
    """The job database cannot be opened, migrated or written."""
