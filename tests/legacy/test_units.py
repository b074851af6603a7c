"""Pure parts of serv.legacy: the template parser and profile choice, folder cleaning, free
space, record statuses, JSON-RPC dispatch."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serv.config import MpiKind, SolverProfile
from serv.core.jobs import Family, Job
from serv.core.states import JobStatus, Termination
from serv.legacy import files
from serv.legacy.expr import parse_job_data, plan_launch
from serv.legacy.records import legacy_status
from serv.legacy.rpc import Dispatcher, LegacyError

NAMES = ("lsdyna",)


def profiles(exe: Path) -> dict[str, SolverProfile]:
    return {
        "smp": SolverProfile("smp", Family.LSDYNA, str(exe), NAMES),
        "mpp": SolverProfile("mpp", Family.LSDYNA, str(exe), NAMES, mpi=MpiKind.MPICH, mpiexec="/usr/bin/mpiexec.mpich"),
        "ccx": SolverProfile("ccx", Family.CALCULIX, "/usr/bin/ccx", ("ccx",)),
    }


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, SolverProfile], dict[str, Path | None]]:
    exe = tmp_path / "bin" / "lsdyna-x"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    deck = tmp_path / "run" / "main.k"
    deck.parent.mkdir()
    deck.write_text("*KEYWORD\n")
    found = {name: Path(p.executable) for name, p in profiles(exe).items()}
    return exe, deck, profiles(exe), found


def data(deck: Path, exe: Path | str, expr: str, ncpu: object = "4", memory: str = "200m") -> dict[str, object]:
    return {"input": str(deck), "solver": str(exe), "ncpu": ncpu, "command": "ignored",
            "expr": expr, "memory": memory}


@pytest.mark.parametrize(("expr", "profile", "ncpu", "memory", "args", "restart"), [
    ("mpiexec -np $NCPU $SOLVER i=$INPUT memory=$MEMORY", "mpp", 4, "200m", (), None),
    ('"C:\\Program Files\\Intel\\MPI\\mpiexec.exe" -n $NCPU $SOLVER i=$INPUT', "mpp", 4, None, (), None),
    ("mpirun -np 4 $SOLVER i=$INPUT memory=2000m d=nodump", "mpp", 4, "2000m", ("d=nodump",), None),
    ("$SOLVER i=$INPUT ncpu=$NCPU memory=$MEMORY", "smp", 4, "200m", (), None),
    ("$SOLVER i=$INPUT", "smp", 4, None, (), None),
    ("$SOLVER i=$INPUT r=d3dump01", "smp", 4, None, (), "d3dump01"),
    ('"$SOLVER" i="$INPUT" memory="$MEMORY"', "smp", 4, "200m", (), None),
])
def test_templates_accepted(setup, expr, profile, ncpu, memory, args, restart) -> None:  # type: ignore[no-untyped-def]
    exe, deck, configured, found = setup
    request = plan_launch(parse_job_data(data(deck, exe, expr)), configured, found, [])
    assert (request.profile, request.ncpu, request.memory, request.args, request.restart) == (
        profile, ncpu, memory, args, restart)
    assert request.input == str(deck)


def test_restart_from_a_dump_given_as_input(setup) -> None:  # type: ignore[no-untyped-def]
    exe, deck, configured, found = setup
    dump = deck.parent / "d3dump02"
    dump.write_text("t=0")
    request = plan_launch(parse_job_data(data(dump, exe, "$SOLVER r=$INPUT")), configured, found, [])
    assert request.restart == "d3dump02" and request.input == str(deck)


@pytest.mark.parametrize(("expr", "why"), [
    ("$SOLVER i=$INPUT; rm -rf /", "shell syntax"),
    ("$SOLVER i=$INPUT && calc.exe", "shell syntax"),
    ("$SOLVER i=$INPUT > out.txt", "shell syntax"),
    ("$SOLVER i=$INPUT | tee log", "shell syntax"),
    ("$SOLVER i=$INPUT `id`", "shell syntax"),
    ("$SOLVER i=$INPUT $(id)", "shell syntax"),
    ("$SOLVER i=$INPUT %COMSPEC%", "shell syntax"),
    ("cmd /c $SOLVER i=$INPUT", "where $SOLVER was expected"),
    ("powershell -c x", "where $SOLVER was expected"),
    ("/bin/sh -c $SOLVER", "where $SOLVER was expected"),
    ("mpiexec -genv X=1 -np $NCPU $SOLVER i=$INPUT", "only '-np $NCPU'"),
    ("mpiexec -np 8 $SOLVER i=$INPUT", "where $NCPU was expected"),
    ("$SOLVER i=/etc/passwd", "i= must be i=$INPUT"),
    ("$SOLVER memory=$MEMORY", "i=$INPUT is missing"),
    ("$SOLVER i=$INPUT o=$INPUT", "placeholders only"),
    ("$SOLVER i=$INPUT evil=1", "not an LS-DYNA option"),
    ("$SOLVER i=$INPUT init", "not a key=value option"),
    ("$SOLVER i=$INPUT memory=lots", "not a size"),
    ("$SOLVER i=$INPUT r=../../etc/x", "not a restart dump"),
    ("$SOLVER i=$INPUT $HOME", "the only $ words"),
    ('$SOLVER i=$INPUT "a"b', "quote"),
    ('$SOLVER i="$INPUT" d="x"y', "quote"),
])
def test_templates_refused(setup, expr, why) -> None:  # type: ignore[no-untyped-def]
    exe, deck, configured, found = setup
    with pytest.raises(LegacyError) as refused:
        plan_launch(parse_job_data(data(deck, exe, expr)), configured, found, [])
    assert refused.value.code == 10
    assert why in refused.value.message and "Allowed: [mpiexec -np $NCPU] $SOLVER i=$INPUT" in refused.value.message


def test_solver_must_be_a_profile_executable_or_under_solver_dirs(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    exe, deck, configured, found = setup
    for other in ("/bin/sh", "/usr/bin/python3", str(tmp_path / "bin" / "nope")):
        with pytest.raises(LegacyError) as refused:
            plan_launch(parse_job_data(data(deck, other, "$SOLVER i=$INPUT")), configured, found, [])
        assert "not the executable of a configured profile" in refused.value.message
    link = tmp_path / "link-to-solver"
    link.symlink_to(exe)
    assert plan_launch(parse_job_data(data(deck, link, "$SOLVER i=$INPUT")), configured, found, []).profile == "smp"
    extra = tmp_path / "dyna" / "lsdyna-R14"
    extra.parent.mkdir()
    extra.write_text("#!/bin/sh\n")
    extra.chmod(0o755)
    request = plan_launch(parse_job_data(data(deck, extra, "mpiexec -np $NCPU $SOLVER i=$INPUT")),
                          configured, found, [extra.parent])
    assert request.derived is not None and request.profile == "legacy:lsdyna-R14-mpi"
    assert request.derived.mpi is MpiKind.MPICH and request.derived.executable == str(extra)
    with pytest.raises(LegacyError):
        plan_launch(parse_job_data(data(deck, "/usr/bin/ccx", "$SOLVER i=$INPUT")), configured,
                    {**found, "ccx": Path("/usr/bin/ccx")}, [])


@pytest.mark.parametrize("ncpu", ["0", "-2", "two", None, True])
def test_bad_ncpu(setup, ncpu) -> None:  # type: ignore[no-untyped-def]
    exe, deck, _, _ = setup
    with pytest.raises(LegacyError):
        parse_job_data(data(deck, exe, "$SOLVER i=$INPUT", ncpu=ncpu))


def make_run(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    run.mkdir()
    deck = run / "main.k"
    for name in ("main.k", "part.key", "mat.dyn", "old.inp", "inc.inc", "x.kbak",
                 "d3plot", "d3plot01", "glstat", "messag", "d3hsp", "stdout", "pid", "d3kil",
                 "d3dump01", "binout0000", "notes.txt"):
        (run / name).write_text(name)
    (run / "sub").mkdir()
    (run / "sub" / "d3plot").write_text("keep")
    outside = tmp_path / "precious.txt"
    outside.write_text("outside")
    (run / "link-out").symlink_to(outside)
    (run / "linkdir").symlink_to(tmp_path)
    return run, deck


def test_clean_all_keeps_decks_links_folders_and_the_input(tmp_path: Path) -> None:
    run, deck = make_run(tmp_path)
    files.check_clean_target(str(deck), clean_all=True, roots=[], forbidden=[])
    removed = files.clean_folder(str(deck), clean_all=True, keep=["d3dump01"])
    assert sorted(removed) == sorted(["d3plot", "d3plot01", "glstat", "messag", "d3hsp", "stdout",
                                      "pid", "d3kil", "binout0000", "notes.txt"])
    assert sorted(os.listdir(run)) == sorted(["main.k", "part.key", "mat.dyn", "old.inp", "inc.inc",
                                              "x.kbak", "d3dump01", "sub", "link-out", "linkdir"])
    assert (tmp_path / "precious.txt").read_text() == "outside" and (run / "sub" / "d3plot").exists()


def test_clean_run_files_only(tmp_path: Path) -> None:
    run, deck = make_run(tmp_path)
    assert sorted(files.clean_folder(str(deck), clean_all=False)) == ["d3kil", "pid", "stdout"]
    assert (run / "d3plot").exists()


def test_clean_refusals(tmp_path: Path) -> None:
    run, deck = make_run(tmp_path)
    for bad, kwargs in [
        ("relative/main.k", {}),
        (str(run / "notes.txt"), {}),  # not a deck: never clean next to an arbitrary file
        (str(run / "missing.k"), {}),
        (str(run / "link-out"), {}),
        (str(run / "linkdir"), {}),  # a link named as the input
        (str(deck), {"roots": [tmp_path / "elsewhere"]}),
        (str(deck), {"forbidden": [run]}),
    ]:
        with pytest.raises(LegacyError) as refused:
            files.check_clean_target(bad, clean_all=True, roots=kwargs.get("roots", []),
                                     forbidden=kwargs.get("forbidden", []))
        assert refused.value.code == 10
    assert len(os.listdir(run)) == 20  # nothing was removed


def test_file_checks(tmp_path: Path) -> None:
    run, deck = make_run(tmp_path)
    assert files.file_exists(str(deck)) and not files.file_exists(str(run))
    assert files.file_exists(str(run / "d3dump"))  # d3dump01 matches (restart support)
    assert not files.file_exists(str(tmp_path / "nowhere" / "d3dump01"))
    assert files.folder_has_no_d3plot(str(deck)) is False
    (run / "d3plot").unlink()
    assert files.folder_has_no_d3plot(str(deck)) is True


def test_free_space(tmp_path: Path) -> None:
    label, free, total = files.free_space("C:", tmp_path)
    assert label == "C:" and isinstance(free, float) and total >= free > 0
    assert files.free_space(str(tmp_path / "not" / "yet"), tmp_path)[0] == str(tmp_path / "not" / "yet")
    assert files.free_space("relative", tmp_path) == ["error reading relative", 0, 0]
    assert files.free_space(None, tmp_path) == ["error reading None", 0, 0]


def job(status: JobStatus, **changes: object) -> Job:
    base = Job(1, "fake", Family.LSDYNA, "/r/main.k", "/r", datetime.now(UTC), status=status)
    import dataclasses
    return dataclasses.replace(base, **changes)


def test_status_mapping() -> None:
    S = JobStatus
    assert [legacy_status(job(s)) for s in (S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING, S.FINISHED,
                                            S.FAILED, S.STOPPED, S.CANCELLED)] == [
        "Starting", "Running", "Running", "Running", "Finished", "Error", "Stopped", "Stopped"]
    assert legacy_status(job(S.STOPPED, termination=Termination.NORMAL,
                             stop_requested_by="sense switch sw1")) == "sw1"
    assert legacy_status(job(S.STOPPED, termination=Termination.NORMAL, stop_requested_by="user")) == "Stopped"


async def test_dispatcher() -> None:
    async def echo(input: str) -> str:
        return input

    dispatch = Dispatcher({"echo": echo})

    async def answer(payload: object) -> object:
        response = await dispatch(payload)
        assert response is not None
        assert json.loads('"' + response.escaped + '"') == response.text
        assert response.escaped == json.dumps(response.text)[1:-1]
        return json.loads(response.text)

    ok = await answer('{"jsonrpc":"2.0","id":1.5,"method":"echo","params":["x"]}')
    assert ok == {"jsonrpc": "2.0", "result": "x", "id": 1.5}
    batch = await answer('[{"jsonrpc":"2.0","id":1,"method":"echo","params":{"input":"a"}},'
                         '{"jsonrpc":"2.0","method":"echo","params":{"input":"b"}}]')
    assert batch == [{"jsonrpc": "2.0", "result": "a", "id": 1}]
    assert (await answer("[]"))["error"]["code"] == -32600  # type: ignore[index]
    assert (await answer({"a": 1}))["error"]["code"] == -32700  # type: ignore[index]
    assert await dispatch('{"jsonrpc":"2.0","method":"echo","params":{"input":"n"}}') is None


def test_any_template_is_refused_or_safe(tmp_path: Path) -> None:
    """Whatever the text, a template either is refused (code 10) or maps onto a configured
    profile with LS-DYNA key=value arguments free of shell syntax."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from serv.solvers.base import SHELL_META

    exe = tmp_path / "lsdyna-x"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    deck = tmp_path / "main.k"
    deck.write_text("*KEYWORD\n")
    configured = profiles(exe)
    found = {name: Path(p.executable) for name, p in configured.items()}
    pieces = st.sampled_from(["$SOLVER", "i=$INPUT", "mpiexec", "-np", "$NCPU", "memory=$MEMORY",
                              "ncpu=$NCPU", ";", "&&", "|", ">", "rm", "-rf", "/", '"', "d=nodump",
                              "r=d3dump01", "$HOME", "`id`", "o=x", "%PATH%", "x=1", "sh", "-c"])
    texts = st.one_of(st.lists(pieces, max_size=8).map(" ".join), st.text(max_size=60))

    @settings(max_examples=300, deadline=None)
    @given(texts)
    def check(expr: str) -> None:
        try:
            request = plan_launch(parse_job_data(data(deck, exe, expr or "x")), configured, found, [])
        except LegacyError as refused:
            assert refused.code in (10, -32602)
            return
        assert request.profile in ("smp", "mpp")
        for arg in request.args:
            assert not SHELL_META.search(arg) and arg.count("=") == 1

    check()
