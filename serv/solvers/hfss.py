"""Ansys Electronics Desktop / HFSS batch solve (`ansysedt -ng -monitor -batchsolve`).

-monitor sends the solver's messages to stdout so progress can be followed there
(FORMATS.md §2.1). Detailed progress parsing comes with issue #4.
"""

from __future__ import annotations

import re
from typing import Sequence

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers.base import SHELL_META, GracefulStop, LaunchContext, LaunchPlan, OutputVerdict

NORMAL = re.compile(r"Normal Completion")
ERROR = re.compile(r"^\[error\][^\n]*$", re.MULTILINE)


class Hfss:
    family = Family.HFSS
    graceful_stop = GracefulStop.SIGTERM
    requires_banner = False

    def validate_args(self, args: Sequence[str]) -> None:
        for i, arg in enumerate(args):
            if SHELL_META.search(arg):
                raise BadParam(f"param 'args'[{i}]: {arg!r} contains shell metacharacters")

    def plan(self, job: Job, ctx: LaunchContext) -> LaunchPlan:
        argv = (str(ctx.executable), "-ng", "-monitor", *ctx.extra_args, *job.args)
        argv += ("-machinelist", f"numcores={job.ncpu}", "-batchsolve", job.input)
        return LaunchPlan(argv)

    def verdict(self, text: str) -> OutputVerdict:
        error = ERROR.search(text)
        if error:
            return OutputVerdict(Termination.ERROR, error.group(0))
        if NORMAL.search(text):
            return OutputVerdict(Termination.NORMAL)
        return OutputVerdict()
