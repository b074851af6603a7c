"""The legacy DynaLauncher desktop GUI, served unchanged by the daemon (issue #6).

* `transport` — Engine.IO v4 / Socket.IO v5 over the daemon's WebSocket server;
* `rpc` — JSON-RPC strings in `message` events, legacy error codes;
* `gateway` — the clients, the daemon's job and output events, the notifications;
* `methods` — the 20 methods the GUI calls, over the JobManager;
* `records`, `expr`, `files` — record shapes and statuses, the command template, the file
  checks, folder cleaning and free disk space;
* `history` — importing an API-DynaLauncher `DynaLauncher.db`.

Reference: ../shared/reference/dynalauncher-protocol.md (§9 is the checklist).
"""

from serv.legacy.gateway import LegacyGateway
from serv.legacy.history import ImportReport, LegacyImportError, import_at_first_start, import_history

__all__ = ["ImportReport", "LegacyGateway", "LegacyImportError", "import_at_first_start", "import_history"]
