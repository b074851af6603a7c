"""The legacy DynaLauncher desktop GUI, served unchanged by the daemon (issue #6).

* `transport` — Engine.IO v4 / Socket.IO v5 over the daemon's WebSocket server;
* `rpc` — JSON-RPC strings in `message` events, legacy error codes;
* `gateway` — the clients, the daemon's job and output events, the notifications;
* `methods` — the 20 methods the GUI calls, over the JobManager;
* `records`, `expr`, `files` — record shapes and statuses, the command template, the file
  checks, folder cleaning and free disk space;
* `history` — importing an API-DynaLauncher `DynaLauncher.db`.

Decisions where the daemon and the legacy server differ (details in each module):

* statuses: starting → Starting; running/paused/stopping → Running; finished → Finished;
  failed → Error; stopped → Stopped, or sw1 when it ended normally after a user's sw1;
  queued jobs are not job rows but queue records; records.py.
* the queue is the daemon's persistent queue: addToQueue = launch (it starts when cores and
  licences allow, behind the jobs queued before it), removeFromQueue = stop (cancelled),
  switchPositionQueue = two moveJobs (a swap), setNcpuQueue = JobManager.set_ncpu (same job,
  same place); methods.py.
* startJob runs only a configured LS-DYNA profile (or an executable under [legacy]
  solver_dirs) with the template parsed into arguments, never a shell; expr.py. When cores
  are busy the job waits in the queue (the GUI sees it there) instead of failing.
* sendD3kill goes through the daemon's sense switches (d3kil holds `sw1.` as LS-DYNA spells
  it; the other words bare, `file` included); KillProcessByJobId is a forced stop
  of the whole tree (status Stopped); removeShell hides a terminal and changes no status.
* getFreeSpace "C:" on Linux/macOS: the file system of the daemon's data folder; files.py.
* getLicCount: lstc_qrun -r with [lstc] ([-2, 0, queued] when it fails, as legacy), else the
  `lsdyna` pool of [licenses], else the cores (used, usable).

Reference: ../shared/reference/dynalauncher-protocol.md (§9 is the checklist).
"""

from serv.legacy.gateway import LegacyGateway
from serv.legacy.history import ImportReport, LegacyImportError, import_at_first_start, import_history

__all__ = ["ImportReport", "LegacyGateway", "LegacyImportError", "import_at_first_start", "import_history"]
