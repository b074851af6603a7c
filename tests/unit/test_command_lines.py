"""contract.md § Configuration (command lines, `mpi`, `[cores] intel_mpi_pinning`) and
§ Methods `launch` (`args`, `restart`): the argv and environment each solver family builds,
the extra arguments it refuses, and how it reads the end of a run from real solver output
(../shared/samples, FORMATS.md).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serv.core.jobs import Family, Job
from serv.core.states import Termination
from serv.errors import BadParam
from serv.solvers import FAMILIES, family_of
from serv.solvers.base import LaunchContext, LaunchPlan, OutputVerdict
from serv.solvers.calculix import CalculiX
from serv.solvers.generic import Generic
from serv.solvers.hfss import Hfss
from serv.solvers.lsdyna import LsDyna
from serv.solvers.mpi import mpi_prefix

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LSDYNA = Path("/opt/lsdyna/lsdyna_d_R16")
MPIEXEC = Path("/usr/bin/mpiexec")
EXE = str(LSDYNA)
# Open MPI refuses root without these; mpi_prefix reads the effective uid when not told.
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
OMPI_ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def job(family: Family, input: str = "/runs/wing/main.k", **fields: object) -> Job:
    base: dict[str, object] = dict(
        id=3, solver=family.value, family=family, input=input,
        workdir=str(Path(input).parent), submitted_at=T0, ncpu=4,
    )
    base.update(fields)
    return Job(**base)  # type: ignore[arg-type]


def ctx(
    mpi: str = "none",
    *,
    executable: Path = LSDYNA,
    cores: tuple[int, ...] | None = (0, 1, 2, 3),
    pinning: bool = True,
    extra_args: tuple[str, ...] = (),
) -> LaunchContext:
    return LaunchContext(
        executable=executable,
        mpiexec=None if mpi == "none" else MPIEXEC,
        mpi=mpi,
        cores=cores,
        intel_mpi_pinning=pinning,
        extra_args=extra_args,
    )


class TestLsDynaSmp:
    """contract.md § Configuration: SMP `EXE i=INPUT ncpu=N [memory=M]`."""

    def test_plan_builds_the_smp_line_when_no_mpi(self) -> None:
        """SMP: the deck's base name (the solver runs in the workdir), ncpu and memory."""
        plan = LsDyna().plan(job(Family.LSDYNA, memory="200m"), ctx())
        assert plan == LaunchPlan((EXE, "i=main.k", "ncpu=4", "memory=200m"), {})

    def test_plan_leaves_memory_out_when_the_job_has_none(self) -> None:
        """No memory= unless the job sets one."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=1), ctx(cores=None))
        assert plan == LaunchPlan((EXE, "i=main.k", "ncpu=1"), {})

    def test_plan_adds_the_restart_dump_when_the_job_restarts(self) -> None:
        """launch(restart="d3dump01") adds r=d3dump01 after the job's own options."""
        plan = LsDyna().plan(job(Family.LSDYNA, memory="200m", restart="d3dump01"), ctx())
        assert plan.argv == (EXE, "i=main.k", "ncpu=4", "memory=200m", "r=d3dump01")

    def test_plan_appends_profile_then_job_args_when_both_are_given(self) -> None:
        """The profile's extra_args, then the job's args, come last, in that order."""
        plan = LsDyna().plan(
            job(Family.LSDYNA, memory="200m", restart="d3dump01", args=("jobid=wing", "d=nodump")),
            ctx(extra_args=("para=1",)),
        )
        assert plan.argv == (
            EXE, "i=main.k", "ncpu=4", "memory=200m", "r=d3dump01", "para=1", "jobid=wing", "d=nodump",
        )


class TestLsDynaMpp:
    """contract.md § Configuration: MPP `MPIEXEC -np N EXE i=INPUT [memory=M]`, pinned per MPI."""

    def test_plan_binds_to_the_booked_cores_when_mpi_is_mpich(self) -> None:
        """MPICH gets -bind-to user:LIST (it ignores an inherited mask); no ncpu= under MPI."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=2, memory="500m"), ctx("mpich", cores=(0, 1)))
        assert plan == LaunchPlan(
            (str(MPIEXEC), "-np", "2", "-bind-to", "user:0,1", EXE, "i=main.k", "memory=500m"), {}
        )

    def test_plan_omits_binding_when_mpich_has_no_booked_cores(self) -> None:
        """Without booked cores there is nothing to bind to."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=2), ctx("mpich", cores=None))
        assert plan.argv == (str(MPIEXEC), "-np", "2", EXE, "i=main.k")

    def test_plan_sets_the_intel_pin_list_when_intel_mpi_pinning_is_on(self) -> None:
        """Intel MPI reads I_MPI_PIN_PROCESSOR_LIST; the argv carries no binding option."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=2), ctx("intelmpi", cores=(4, 6), pinning=True))
        assert plan == LaunchPlan(
            (str(MPIEXEC), "-np", "2", EXE, "i=main.k"), {"I_MPI_PIN_PROCESSOR_LIST": "4,6"}
        )

    def test_plan_leaves_the_intel_pin_list_unset_when_intel_mpi_pinning_is_off(self) -> None:
        """--noIntelMpiCoreAllocation: no I_MPI_PIN_PROCESSOR_LIST at all."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=2), ctx("intelmpi", cores=(4, 6), pinning=False))
        assert plan == LaunchPlan((str(MPIEXEC), "-np", "2", EXE, "i=main.k"), {})

    def test_plan_uses_cpu_set_and_bind_to_core_when_mpi_is_openmpi(self) -> None:
        """Open MPI gets --cpu-set LIST --bind-to core, and its root variables only as root."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=2), ctx("openmpi", cores=(2, 3)))
        assert plan.argv == (
            str(MPIEXEC), "-np", "2", "--cpu-set", "2,3", "--bind-to", "core", EXE, "i=main.k",
        )
        assert dict(plan.env) == (OMPI_ROOT_ENV if AS_ROOT else {})

    def test_plan_uses_dash_n_without_binding_when_mpi_is_msmpi(self) -> None:
        """MS-MPI: mpiexec -n N; pinning comes from the inherited affinity."""
        plan = LsDyna().plan(job(Family.LSDYNA, ncpu=8, memory="1g"), ctx("msmpi", cores=tuple(range(8))))
        assert plan == LaunchPlan((str(MPIEXEC), "-n", "8", EXE, "i=main.k", "memory=1g"), {})


class TestMpiPrefix:
    """contract.md § Configuration `mpi`: the mpiexec part on its own."""

    @pytest.mark.parametrize("as_root", [True, False])
    def test_mpi_prefix_allows_root_for_openmpi_only_when_running_as_root(self, as_root: bool) -> None:
        """OMPI_ALLOW_RUN_AS_ROOT and _CONFIRM are set exactly when running as root."""
        argv, env = mpi_prefix("openmpi", MPIEXEC, 2, (0, 1), intel_mpi_pinning=False,
                               running_as_root=as_root)
        assert argv == (str(MPIEXEC), "-np", "2", "--cpu-set", "0,1", "--bind-to", "core")
        assert dict(env) == (OMPI_ROOT_ENV if as_root else {})

    @pytest.mark.parametrize("kind", ["mpich", "intelmpi", "msmpi"])
    def test_mpi_prefix_never_sets_the_root_variables_when_mpi_is_not_openmpi(self, kind: str) -> None:
        """Only Open MPI needs the allow-run-as-root pair."""
        _, env = mpi_prefix(kind, MPIEXEC, 2, (0, 1), intel_mpi_pinning=True, running_as_root=True)
        assert not set(env) & set(OMPI_ROOT_ENV)

    def test_mpi_prefix_is_empty_when_there_is_no_mpi(self) -> None:
        """mpi = "none", or no mpiexec resolved: no prefix, no env."""
        assert mpi_prefix("none", MPIEXEC, 2, (0, 1), intel_mpi_pinning=True) == ((), {})
        assert mpi_prefix("mpich", None, 2, (0, 1), intel_mpi_pinning=True) == ((), {})

    def test_mpi_prefix_refuses_the_kind_when_it_is_unknown(self) -> None:
        """An MPI flavour the daemon does not know is a programming error, named in the text."""
        with pytest.raises(ValueError, match="'mvapich'"):
            mpi_prefix("mvapich", MPIEXEC, 2, None, intel_mpi_pinning=True)


class TestCalculiX:
    """FORMATS.md §3: `ccx -i JOBNAME` (no .inp), threads and ordered output through env."""

    def test_plan_strips_inp_and_sets_threads_when_given_a_deck(self) -> None:
        """beamp.inp → `ccx -i beamp`, OMP_NUM_THREADS=ncpu, GFORTRAN_UNBUFFERED_PRECONNECTED=y."""
        plan = CalculiX().plan(
            job(Family.CALCULIX, input="/runs/beam/beamp.inp", ncpu=2),
            ctx(executable=Path("/usr/bin/ccx"), cores=(0, 1)),
        )
        assert plan == LaunchPlan(
            ("/usr/bin/ccx", "-i", "beamp"),
            {"OMP_NUM_THREADS": "2", "GFORTRAN_UNBUFFERED_PRECONNECTED": "y"},
        )

    def test_plan_strips_an_upper_case_suffix_when_the_deck_is_named_inp(self) -> None:
        """BEAM.INP is job BEAM; profile and job args come before -i."""
        plan = CalculiX().plan(
            job(Family.CALCULIX, input="/runs/beam/BEAM.INP", ncpu=1, args=("-o", "exo")),
            ctx(executable=Path("/usr/bin/ccx"), extra_args=("-v",)),
        )
        assert plan.argv == ("/usr/bin/ccx", "-v", "-o", "exo", "-i", "BEAM")
        assert plan.env["OMP_NUM_THREADS"] == "1"


class TestGenericAndHfss:
    """contract.md § Configuration `[solvers.NAME] family`: generic and hfss command lines."""

    def test_plan_puts_the_input_last_when_the_family_is_generic(self) -> None:
        """Generic: EXE, the profile's extra args, the job's args, then the input path."""
        plan = Generic().plan(
            job(Family.GENERIC, input="/runs/x/model.dat", args=("--fast",)),
            ctx(executable=Path("/opt/tool/run"), extra_args=("-q",)),
        )
        assert plan == LaunchPlan(("/opt/tool/run", "-q", "--fast", "/runs/x/model.dat"), {})

    def test_plan_prefixes_mpiexec_when_a_generic_profile_uses_mpi(self) -> None:
        """Generic under MPICH: the same mpiexec prefix and binding as LS-DYNA."""
        plan = Generic().plan(
            job(Family.GENERIC, input="/runs/x/model.dat", ncpu=2),
            ctx("mpich", executable=Path("/opt/tool/run"), cores=(0, 1)),
        )
        assert plan.argv == (str(MPIEXEC), "-np", "2", "-bind-to", "user:0,1", "/opt/tool/run",
                             "/runs/x/model.dat")

    def test_plan_builds_the_batchsolve_line_when_the_family_is_hfss(self) -> None:
        """HFSS: -ng -monitor, profile args, -machinelist list=localhost:1:N:90%, then
        -batchsolve [DESIGN[:Nominal:SETUP]] PROJECT from the job's design=/setup= args."""
        plan = Hfss().plan(
            job(Family.HFSS, input="/runs/ant/antenna.aedt", ncpu=8, args=("design=ant", "setup=Setup1")),
            ctx(executable=Path("/opt/AnsysEM/ansysedt"), extra_args=("-jobid", "JOB_1")),
        )
        assert plan == LaunchPlan(
            ("/opt/AnsysEM/ansysedt", "-ng", "-monitor", "-jobid", "JOB_1",
             "-machinelist", "list=localhost:1:8:90%", "-batchsolve", "ant:Nominal:Setup1",
             "/runs/ant/antenna.aedt"),
            {},
        )

    @pytest.mark.parametrize("family", list(Family), ids=[f.value for f in Family])
    def test_family_of_returns_the_module_for_the_family_when_asked(self, family: Family) -> None:
        """Every family has exactly one implementation, registered under its own name."""
        assert family_of(family).family is family
        assert set(FAMILIES) == set(Family)


SHELL_METACHARACTERS = [";", "&", "|", "<", ">", "`", "$", "\\", "\n", '"', "'", "*", "?",
                        "(", ")", "{", "}", "[", "]", "!", "~"]


class TestValidateArgs:
    """contract.md § Methods `launch` (`args` validated per profile) and § Errors: BadParam
    (-32602) naming the bad element."""

    @pytest.mark.parametrize("char", SHELL_METACHARACTERS, ids=[repr(c) for c in SHELL_METACHARACTERS])
    @pytest.mark.parametrize("family", list(Family), ids=[f.value for f in Family])
    def test_validate_args_refuses_shell_metacharacters_when_any_family_gets_one(
        self, family: Family, char: str
    ) -> None:
        """A shell metacharacter in args[1] is refused, and the message names args[1]."""
        good = {Family.LSDYNA: "jobid=wing", Family.CALCULIX: "-o", Family.HFSS: "design=board"}.get(
            family, "-x"
        )
        with pytest.raises(BadParam) as caught:
            family_of(family).validate_args([good, f"o=out{char}x"])
        assert caught.value.code == -32602
        assert "'args'[1]" in str(caught.value)

    @pytest.mark.parametrize("arg", ["i=other.k", "ncpu=8", "memory=2g", "NCPU=8", "I=other.k"])
    def test_validate_args_refuses_reserved_keys_when_the_family_is_lsdyna(self, arg: str) -> None:
        """i=, ncpu= and memory= come from the job's own params and cannot be passed again."""
        with pytest.raises(BadParam) as caught:
            LsDyna().validate_args(["jobid=wing", "d=nodump", arg])
        message = str(caught.value)
        assert "'args'[2]" in message
        assert f"{arg.split('=')[0].lower()}=" in message
        assert "set from the job's own" in message

    @pytest.mark.parametrize("arg", ["foo=1", "ncpus=2", "rm=1"])
    def test_validate_args_refuses_unknown_keys_when_the_family_is_lsdyna(self, arg: str) -> None:
        """Keys LS-DYNA does not document are refused, naming the key and the allowed ones."""
        with pytest.raises(BadParam) as caught:
            LsDyna().validate_args([arg])
        message = str(caught.value)
        assert "'args'[0]" in message
        assert f"unknown LS-DYNA option {arg.split('=')[0]}=" in message
        assert "jobid" in message

    @pytest.mark.parametrize("arg", ["--help", "jobid", "=1", "o=", "o=a=b", "o=a b", "-o"])
    def test_validate_args_refuses_non_key_value_text_when_the_family_is_lsdyna(self, arg: str) -> None:
        """LS-DYNA options are key=value; anything else is refused, naming args[0]."""
        with pytest.raises(BadParam, match=r"'args'\[0\]"):
            LsDyna().validate_args([arg])

    @pytest.mark.parametrize("arg", ["-x", "--input=a", "-i"])
    def test_validate_args_refuses_unknown_flags_when_the_family_is_calculix(self, arg: str) -> None:
        """ccx accepts only -o and -v from a client; -i is set from the input."""
        with pytest.raises(BadParam, match=r"'args'\[1\]"):
            CalculiX().validate_args(["-v", arg])

    @pytest.mark.parametrize(
        ("family", "args"),
        [
            (Family.LSDYNA, ["jobid=wing", "d=nodump", "memory2=200m", "para=1", "R=d3dump01"]),
            (Family.LSDYNA, []),
            (Family.CALCULIX, ["-o", "exo", "-v"]),
            (Family.GENERIC, ["-x", "--level=3", "a,b", "C:/data/x.k", "50%"]),
            (Family.HFSS, ["design=board", "setup=Setup1", "batchoption=HFSS/RAMLimitPercent=90"]),
        ],
        ids=["lsdyna", "lsdyna-empty", "calculix", "generic", "hfss"],
    )
    def test_validate_args_accepts_the_args_when_the_family_allows_them(
        self, family: Family, args: list[str]
    ) -> None:
        """Documented options pass unchanged."""
        family_of(family).validate_args(args)


def sample(relative: str) -> str:
    return (SAMPLES / relative).read_text(encoding="utf-8", errors="replace").replace("\r", "")


CALCULIX_NORMAL = sorted(
    p.name for p in (SAMPLES / "calculix").glob("*-normal*.stdout.txt")
)


class TestVerdict:
    """contract.md § Job `termination` and `message`: read from real solver output
    (../shared/samples, FORMATS.md §1.7 and §3)."""

    def test_verdict_is_normal_when_lsdyna_printed_its_normal_banner(self) -> None:
        """R16.1 SMP messag ending in `N o r m a l    t e r m i n a t i o n` → normal."""
        text = sample("lsdyna/lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag")
        assert LsDyna().verdict(text) == OutputVerdict(Termination.NORMAL)

    def test_verdict_is_error_with_the_error_text_when_lsdyna_mpp_failed_its_input(self) -> None:
        """MPP input error → error; the message is the first `*** Error` block, which names the cause."""
        text = sample("lsdyna/lsdyna-mppDEV-10procs-input-error-termination.issue-excerpt.txt")
        verdict = LsDyna().verdict(text)
        assert verdict.termination is Termination.ERROR
        assert verdict.failure_text == "Error 20211 (STR+211): reading boundary codes for implicit springback"

    def test_verdict_has_no_termination_when_lsdyna_is_still_running(self) -> None:
        """A messag cut off mid-run has no banner yet."""
        text = sample("lsdyna/lsdyna-R16.1-smp-win-4thr-TRUNCATED-inprogress.messag")
        assert LsDyna().verdict(text) == OutputVerdict()

    def test_verdict_takes_the_last_banner_when_a_restart_follows_an_error(self) -> None:
        """An error banner followed by a later normal one (a restart appended) is normal."""
        error = sample("lsdyna/lsdyna-mppDEV-10procs-input-error-termination.issue-excerpt.txt")
        normal = sample("lsdyna/lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag")
        assert LsDyna().verdict(error + normal).termination is Termination.NORMAL
        assert LsDyna().verdict(normal + error).termination is Termination.ERROR

    def test_calculix_samples_include_normal_runs_when_listed(self) -> None:
        """The normal-run samples this file relies on are present."""
        assert len(CALCULIX_NORMAL) >= 3, CALCULIX_NORMAL

    @pytest.mark.parametrize("name", CALCULIX_NORMAL)
    def test_verdict_is_normal_when_calculix_printed_job_finished(self, name: str) -> None:
        """` Job finished` and no `*ERROR` line → normal."""
        assert CalculiX().verdict(sample(f"calculix/{name}")) == OutputVerdict(Termination.NORMAL)

    @pytest.mark.parametrize(
        ("name", "error_line"),
        [
            ("ccx2.20-beamcr-input-error.stdout.txt",
             "*ERROR reading *VISCO: no strictly positive value for the parameter CETOL given"),
            ("ccx2.20-beampiso_collapse-no-convergence-error.stdout.txt",
             "*ERROR: increment size smaller than minimum"),
        ],
        ids=["input-error", "no-convergence"],
    )
    def test_verdict_is_error_with_the_error_line_when_calculix_printed_one(
        self, name: str, error_line: str
    ) -> None:
        """Any `*ERROR` line → error; the failure text is the first such line with its
        indented continuation (the reason), as CalculixOutput reports it."""
        verdict = CalculiX().verdict(sample(f"calculix/{name}"))
        assert verdict == OutputVerdict(Termination.ERROR, error_line)

    def test_verdict_has_no_termination_when_calculix_is_still_running(self) -> None:
        """Output captured 2 s into a run has neither `Job finished` nor `*ERROR`."""
        text = sample("calculix/ccx2.20-beampiso_collapse-inprogress-at-2s.stdout.txt")
        assert CalculiX().verdict(text) == OutputVerdict()

    def test_verdict_has_no_termination_when_the_family_is_generic(self) -> None:
        """Generic solvers are judged by their exit code alone."""
        text = sample("lsdyna/lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag")
        assert Generic().verdict(text) == OutputVerdict()


def test_rank_signal_is_read_from_the_launchers_report() -> None:
    """MPICH Hydra's and Open MPI's reports of a rank killed by a signal (text seen here)."""
    from serv.solvers.mpi import rank_signal

    hydra = "YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)\n"
    assert rank_signal(hydra) == 9
    assert rank_signal("mpiexec noticed that process rank 1 with PID 0 on node vm exited on signal 15 (Terminated).") == 15
    assert rank_signal(" N o r m a l    t e r m i n a t i o n") is None
