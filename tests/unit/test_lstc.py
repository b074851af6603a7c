"""dynalauncher-protocol.md §3.3, §3.5, §3.6 and §5.6, FORMATS.md §4: `serv.lstc` reads
`lstc_qrun -r` and `lstc_qrun` output (every file in ../shared/samples/lstc), and runs the real
fake tools (tests/fakes/fake_lstc.py) as processes: success, failure, timeout, refused hosts.

Expected values below were read off the sample files by hand. Lines marked UNSEEN are
synthetic: no sample shows them.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from pathlib import Path

import psutil
import pytest

from serv.lstc import (
    KILL_MARKER,
    FailureKind,
    KillResult,
    LicenseFeature,
    LicenseGroup,
    LicenseInfo,
    LstcFailure,
    LstcParseError,
    LstcTools,
    QrunRow,
    is_lsdyna_feature,
    kill_program,
    lsdyna_capacity,
    lsdyna_usage,
    parse_qrun,
    parse_qrun_r,
    query_licenses,
    query_programs,
    valid_host,
)
from tests.conftest import DEADLINE
from tests.fakes import install_fake_lstc

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples" / "lstc"
R600 = SAMPLES / "lstc_qrun-r-license-information-600.txt"
R2000 = SAMPLES / "lstc_qrun-r-license-information-2000.txt"
PROGRAMS = SAMPLES / "lstc_qrun-running-programs.txt"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def feature(name: str, expiry: date, used: int, free: int, max_: int) -> LicenseFeature:
    return LicenseFeature(name, expiry.strftime("%m/%d/%Y"), expiry, used, free, max_, 0)


EXPIRY_600 = date(2021, 4, 5)
INFO_600 = LicenseInfo(
    server="0@localhost",
    features=(
        feature("MPPDYNA", EXPIRY_600, 384, 216, 600),
        *(
            feature(name, EXPIRY_600, 0, 216, 600)
            for name in ("MPPDYNA_971", "MPPDYNA_970", "MPPDYNA_960",
                         "LS-DYNA", "LS-DYNA_971", "LS-DYNA_970", "LS-DYNA_960")
        ),
    ),
    groups=(
        LicenseGroup(384, 216, 600, 0, (
            "MPPDYNA", "MPPDYNA_971", "MPPDYNA_970", "MPPDYNA_960",
            "LS-DYNA", "LS-DYNA_971", "LS-DYNA_970", "LS-DYNA_960",
        )),
    ),
)
INFO_2000 = LicenseInfo(
    server="31011@haswell2",
    features=(
        feature("LS-DYNA", date(2020, 7, 31), 0, 2000, 2000),
        feature("MPPDYNA", date(2020, 7, 31), 0, 2000, 2000),
    ),
    groups=(LicenseGroup(0, 2000, 2000, 0, ("LS-DYNA", "MPPDYNA")),),
)
ROWS = [
    QrunRow("hna", "84212@o0284.ten.osc.ed", "MPPDYNA", "Tue Mar 17 16:18", 28),
    QrunRow("sciappst", "85606@o0579.ten.osc.ed", "MPPDYNA", "Tue Mar 17 16:22", 10),
]


def test_samples_folder_holds_the_three_files_these_tests_read() -> None:
    """The tests cover every recorded lstc output (a wrong path would pass vacuously)."""
    assert sorted(p.name for p in SAMPLES.iterdir()) == sorted(p.name for p in (R600, R2000, PROGRAMS))


class TestParseLicenses:
    """FORMATS.md §4, protocol §3.3: the `lstc_qrun -r` table, three numbers per row."""

    def test_parse_qrun_r_reads_every_row_when_given_the_600_sample(self) -> None:
        """384 used, 216 free of 600 on MPPDYNA and the group; versioned rows show 0 used."""
        info = parse_qrun_r(text(R600))
        assert info == INFO_600
        assert info.group == LicenseGroup(384, 216, 600, 0, INFO_600.groups[0].features)
        assert (info.group.used, info.group.free, info.group.max) == (384, 216, 600)

    def test_parse_qrun_r_reads_every_row_when_given_the_2000_sample(self) -> None:
        """Two features of 2000 sharing one group of 2000, nothing used."""
        assert parse_qrun_r(text(R2000)) == INFO_2000

    def test_used_plus_free_is_max_on_main_rows_and_groups_of_both_samples(self) -> None:
        """FORMATS.md §4's check holds where it should: MPPDYNA (600) and all rows (2000)."""
        for info in (parse_qrun_r(text(R600)), parse_qrun_r(text(R2000))):
            assert info.group is not None
            assert info.group.used + info.group.free == info.group.max
            assert info.features[0].used + info.features[0].free == info.features[0].max

    def test_parse_qrun_r_gives_the_same_result_when_lines_end_in_crlf(self) -> None:
        """Windows line ends change nothing."""
        assert parse_qrun_r(text(R600).replace("\n", "\r\n")) == INFO_600

    def test_parse_qrun_r_keeps_the_expiry_text_when_it_is_no_date(self) -> None:
        """UNSEEN expiry forms (e.g. a permanent licence) keep the counts readable."""
        body = text(R2000).replace("07/31/2020", "permanent", 1)
        first = parse_qrun_r(body).features[0]
        assert (first.expiry_text, first.expiry, first.used, first.max) == ("permanent", None, 0, 2000)

    def test_parse_qrun_r_has_no_server_when_none_was_named(self) -> None:
        """Without the `Using user specified server` line, server is None."""
        assert parse_qrun_r(text(R2000).split("\n", 1)[1]).server is None

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            ("", "no 'PROGRAM EXPIRATION' header in empty output"),
            ("*** ERROR: unable to contact license server\n", "unable to contact"),
            ("PROGRAM          EXPIRATION CPUS  USED   FREE    MAX | QUEUE\n"
             "LS-DYNA          07/31/2020          0   2000   2000 |     0\n", "no dashed rule"),
            ("PROGRAM          EXPIRATION CPUS  USED   FREE    MAX | QUEUE\n"
             "---------------- ----------      ----- ------ ------ | -----\n\n", "no rows"),
            ("PROGRAM          EXPIRATION CPUS  USED   FREE    MAX | QUEUE\n"
             "---------------- ----------      ----- ------ ------ | -----\n"
             "LS-DYNA          07/31/2020   4    0   2000   2000 |     0\n", "unrecognised row"),
        ],
    )
    def test_parse_qrun_r_raises_when_the_text_is_no_licence_table(self, body: str, match: str) -> None:
        """Errors, empty output, a missing rule, no rows or a four-number row are refused."""
        with pytest.raises(LstcParseError, match=match):
            parse_qrun_r(body)


class TestLsdynaUsage:
    """protocol §5.6, FORMATS.md §4: what counts against pool `lsdyna` on the server."""

    def test_lsdyna_usage_is_the_group_total_when_given_the_600_sample(self) -> None:
        """The group holding LS-DYNA features: 384 used of 600."""
        info = parse_qrun_r(text(R600))
        assert (lsdyna_usage(info), lsdyna_capacity(info)) == (384, 600)

    def test_lsdyna_usage_counts_the_group_once_when_features_share_it(self) -> None:
        """2000 sample: LS-DYNA and MPPDYNA share 2000, not 4000."""
        info = parse_qrun_r(text(R2000))
        assert (lsdyna_usage(info), lsdyna_capacity(info)) == (0, 2000)

    def test_lsdyna_usage_sums_feature_rows_when_there_is_no_group_row(self) -> None:
        """UNSEEN: no LICENSE GROUP row; LS-DYNA rows' own used counts add up."""
        body = "\n".join(line for line in text(R600).split("\n") if "LICENSE GROUP" not in line)
        info = parse_qrun_r(body)
        assert info.groups == ()
        assert (lsdyna_usage(info), lsdyna_capacity(info)) == (384, 600)

    def test_lsdyna_usage_is_none_when_the_table_has_no_lsdyna_feature(self) -> None:
        """UNSEEN: another product only; nothing to say about pool lsdyna."""
        body = text(R2000).replace("LS-DYNA  ", "LSPREPOST").replace("MPPDYNA", "LSOPT  ")
        info = parse_qrun_r(body)
        assert [f.name for f in info.features] == ["LSPREPOST", "LSOPT"]
        assert lsdyna_usage(info) is None and lsdyna_capacity(info) is None

    @pytest.mark.parametrize(
        ("name", "expected"),
        [("LS-DYNA", True), ("MPPDYNA", True), ("SMPDYNA", True), ("MPPDYNA_971", True),
         ("ls-dyna_960", True), ("LSPREPOST", False), ("LICENSE", False), ("MPPDYNAX", False)],
    )
    def test_is_lsdyna_feature_matches_lsdyna_names_only(self, name: str, expected: bool) -> None:
        """LS-DYNA, MPPDYNA, SMPDYNA and their versioned forms."""
        assert is_lsdyna_feature(name) is expected


class TestParsePrograms:
    """FORMATS.md §4, protocol §3.5: the running programs of plain `lstc_qrun`."""

    def test_parse_qrun_reads_both_rows_when_given_the_sample(self) -> None:
        """Two MPPDYNA programs of 28 and 10 procs; `No programs queued` ends the table."""
        assert parse_qrun(text(PROGRAMS)) == ROWS

    def test_parse_qrun_gives_the_same_rows_when_lines_end_in_crlf(self) -> None:
        """Windows line ends change nothing."""
        assert parse_qrun(text(PROGRAMS).replace("\n", "\r\n")) == ROWS

    def test_parse_qrun_gives_no_rows_when_the_table_is_empty(self) -> None:
        """Header and rule with no rows below: nothing runs."""
        body = "\n".join(line for line in text(PROGRAMS).split("\n") if "MPPDYNA" not in line)
        assert parse_qrun(body) == []

    def test_parse_qrun_reads_an_optional_jobs_column_when_present(self) -> None:
        """UNSEEN: the 9th token the predecessor read as `josbs`."""
        body = text(PROGRAMS).replace("16:18    28", "16:18    28     1")
        assert parse_qrun(body)[0] == QrunRow("hna", "84212@o0284.ten.osc.ed", "MPPDYNA",
                                              "Tue Mar 17 16:18", 28, jobs=1)

    def test_parse_qrun_gives_no_rows_when_nothing_runs_and_there_is_no_table(self) -> None:
        """UNSEEN: a bare `No programs running` message."""
        assert parse_qrun("Using user specified server 1@h\n\nNo programs running\n") == []

    @pytest.mark.parametrize("body", ["", "lstc_qrun: cannot connect to server 31011@haswell2\n"])
    def test_parse_qrun_raises_when_the_text_has_no_programs_table(self, body: str) -> None:
        """Output with no table is unparseable, not "nothing runs"."""
        with pytest.raises(LstcParseError, match="no programs table"):
            parse_qrun(body)


class TestHostValidation:
    """protocol §3.6, §8: qKillJob's host comes from a client; only PID@HOST may reach the tool."""

    @pytest.mark.parametrize("host", ["84212@o0284.ten.osc.ed", "1@h", "123@WS-01_a.b"])
    def test_valid_host_accepts_pid_at_host_when_well_formed(self, host: str) -> None:
        """The hosts lstc_qrun prints (cut or not)."""
        assert valid_host(host)

    @pytest.mark.parametrize(
        "host",
        ["", "host", "abc@host", "1@", "@host", "-1@h", "1@h;rm -rf /", "1@h x", "1@h\n",
         "1@h$(id)", "1@h/..", "１２@h", "1@hé", "1@" + "h" * 300, 12],
    )
    def test_valid_host_refuses_anything_else(self, host: object) -> None:
        """Options, shell text, spaces, newlines, non-ASCII digits, huge strings, non-strings."""
        assert not valid_host(host)


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LstcTools, Path]:
    """The fake lstc_qrun / lstc_qkill on disk (600 sample), and the file they record runs in."""
    qrun, qkill = install_fake_lstc(tmp_path / "bin", qrun_r=R600, qrun=PROGRAMS)
    record = tmp_path / "runs.jsonl"
    monkeypatch.setenv("FAKE_LSTC_RECORD", str(record))
    monkeypatch.delenv("FAKE_LSTC_MODE", raising=False)
    return LstcTools(qrun=qrun, qkill=qkill, server="31011@haswell2", timeout_s=DEADLINE), record


def runs(record: Path) -> list[dict[str, object]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


class TestRunningTheTools:
    """protocol §5.6: the tools run without a shell, with the server in LSTC_LICENSE_SERVER,
    under a timeout; any failure is a typed result, never an exception."""

    async def test_query_licenses_parses_the_tools_output_when_it_succeeds(
        self, fake_tools: tuple[LstcTools, Path]
    ) -> None:
        """`lstc_qrun -r` with the server in its environment, parsed."""
        tools, record = fake_tools
        info = await query_licenses(tools)
        assert info == INFO_600
        assert [(r["role"], r["argv"], r["server"]) for r in runs(record)] == [
            ("qrun", ["-r"], "31011@haswell2")
        ]

    async def test_query_programs_parses_the_tools_output_when_it_succeeds(
        self, fake_tools: tuple[LstcTools, Path]
    ) -> None:
        """Plain `lstc_qrun`, parsed into the sample's two rows."""
        tools, record = fake_tools
        assert await query_programs(tools) == ROWS
        assert [r["argv"] for r in runs(record)] == [[]]

    async def test_query_licenses_leaves_the_environment_alone_when_no_server_is_set(
        self, fake_tools: tuple[LstcTools, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """server=None: the daemon's own LSTC_LICENSE_SERVER reaches the tool unchanged."""
        tools, record = fake_tools
        monkeypatch.setenv("LSTC_LICENSE_SERVER", "1700@from-daemon-env")
        tools = LstcTools(qrun=tools.qrun, qkill=tools.qkill, timeout_s=tools.timeout_s)
        assert isinstance(await query_licenses(tools), LicenseInfo)
        assert runs(record)[0]["server"] == "1700@from-daemon-env"

    @pytest.mark.parametrize("call", [query_licenses, query_programs])
    async def test_query_returns_an_exit_failure_when_the_tool_fails(
        self, fake_tools: tuple[LstcTools, Path], monkeypatch: pytest.MonkeyPatch, call: object
    ) -> None:
        """Exit 1: an EXIT failure quoting the tool's stderr."""
        tools, _ = fake_tools
        monkeypatch.setenv("FAKE_LSTC_MODE", "fail")
        result = await call(tools)  # type: ignore[operator]
        assert isinstance(result, LstcFailure)
        assert result.kind is FailureKind.EXIT
        assert "exit status 1" in result.message and "cannot contact the licence server" in result.message

    @pytest.mark.parametrize("call", [query_licenses, query_programs])
    async def test_query_returns_an_unparseable_failure_when_the_output_is_garbage(
        self, fake_tools: tuple[LstcTools, Path], monkeypatch: pytest.MonkeyPatch, call: object
    ) -> None:
        """Exit 0 with unexpected text: UNPARSEABLE, naming the text."""
        tools, _ = fake_tools
        monkeypatch.setenv("FAKE_LSTC_MODE", "garbage")
        result = await call(tools)  # type: ignore[operator]
        assert isinstance(result, LstcFailure)
        assert result.kind is FailureKind.UNPARSEABLE
        assert "this is not lstc output" in result.message

    async def test_query_licenses_returns_a_timeout_failure_within_the_timeout_when_the_tool_hangs(
        self, fake_tools: tuple[LstcTools, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hung tool is killed at the timeout and reported as TIMEOUT; no process is left."""
        tools, record = fake_tools
        monkeypatch.setenv("FAKE_LSTC_MODE", "hang")
        tools = LstcTools(qrun=tools.qrun, qkill=tools.qkill, server=tools.server, timeout_s=0.5)
        started = time.monotonic()
        async with asyncio.timeout(DEADLINE):
            result = await query_licenses(tools)
        elapsed = time.monotonic() - started
        assert isinstance(result, LstcFailure)
        assert result.kind is FailureKind.TIMEOUT
        assert "no answer within 0.5 s" in result.message and "31011@haswell2" in result.message
        assert elapsed < 0.5 + 5.0, f"took {elapsed:.2f} s"
        pid = runs(record)[0]["pid"]
        assert isinstance(pid, int) and not psutil.pid_exists(pid)

    async def test_query_licenses_returns_a_missing_failure_when_the_tool_does_not_exist(
        self, tmp_path: Path
    ) -> None:
        """No executable: MISSING, naming the path."""
        tools = LstcTools(qrun=tmp_path / "nowhere" / "lstc_qrun")
        result = await query_licenses(tools)
        assert isinstance(result, LstcFailure)
        assert result.kind is FailureKind.MISSING
        assert "nowhere/lstc_qrun not found" in result.message

    async def test_query_programs_returns_an_os_error_failure_when_the_tool_is_not_executable(
        self, tmp_path: Path
    ) -> None:
        """A file without the execute bit: OS_ERROR, not an exception."""
        tool = tmp_path / "lstc_qrun"
        tool.write_text("not a program\n", encoding="utf-8")
        result = await query_programs(LstcTools(qrun=tool))
        assert isinstance(result, LstcFailure)
        assert result.kind is FailureKind.OS_ERROR

    @pytest.mark.parametrize("server", ["31011@haswell2 -r", "-s", "1@h;x", ""])
    def test_lstc_tools_raises_when_the_server_is_malformed(self, server: str) -> None:
        """A bad configured server is a programming/config error, caught at construction."""
        with pytest.raises(ValueError, match="expected PORT@HOST or HOST"):
            LstcTools(server=server)


class TestKill:
    """protocol §3.6, §5.6: `lstc_qkill PID@HOST`; success = `Program queued for termination`."""

    async def test_kill_program_succeeds_when_the_tool_queues_the_termination(
        self, fake_tools: tuple[LstcTools, Path]
    ) -> None:
        """The host goes as one argv element; the message is the tool's output."""
        tools, record = fake_tools
        result = await kill_program("84212@o0284.ten.osc.ed", tools)
        assert result == KillResult(True, KILL_MARKER)
        success, message = result
        assert success and message == KILL_MARKER
        assert [(r["role"], r["argv"], r["server"]) for r in runs(record)] == [
            ("qkill", ["84212@o0284.ten.osc.ed"], "31011@haswell2")
        ]

    async def test_kill_program_fails_with_the_output_when_the_tool_says_something_else(
        self, tmp_path: Path
    ) -> None:
        """UNSEEN wording: anything without the marker is a failure quoting the output."""
        _, qkill = install_fake_lstc(tmp_path / "bin", qrun_r=R600, qrun=PROGRAMS,
                                     qkill_output="No such program", name_prefix="x-")
        assert qkill.name == "x-lstc_qkill"
        success, message = await kill_program("1@h", LstcTools(qkill=qkill))
        assert not success
        assert "unexpected response" in message and "No such program" in message

    async def test_kill_program_fails_when_the_tool_exits_non_zero(
        self, fake_tools: tuple[LstcTools, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Exit 1 without the marker: failure naming the exit status."""
        tools, _ = fake_tools
        monkeypatch.setenv("FAKE_LSTC_MODE", "fail")
        success, message = await kill_program("1@h", tools)
        assert not success and "exit status 1" in message

    async def test_kill_program_fails_within_the_timeout_when_the_tool_hangs(
        self, fake_tools: tuple[LstcTools, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hung lstc_qkill: failure at the timeout, not a hang of the caller."""
        tools, _ = fake_tools
        monkeypatch.setenv("FAKE_LSTC_MODE", "hang")
        tools = LstcTools(qkill=tools.qkill, timeout_s=0.3)
        async with asyncio.timeout(DEADLINE):
            success, message = await kill_program("1@h", tools)
        assert not success and "no answer within 0.3 s" in message

    async def test_kill_program_fails_when_the_tool_is_missing(self, tmp_path: Path) -> None:
        """No executable: failure naming it (legacy's 'Failed to execute' case)."""
        success, message = await kill_program("1@h", LstcTools(qkill=tmp_path / "lstc_qkill"))
        assert not success and "not found" in message

    @pytest.mark.parametrize("host", ["-h", "1@h --all", "1@h;reboot", "", "x@y"])
    async def test_kill_program_refuses_a_bad_host_without_running_anything(
        self, fake_tools: tuple[LstcTools, Path], host: str
    ) -> None:
        """A malformed host is refused before any process starts."""
        tools, record = fake_tools
        success, message = await kill_program(host, tools)
        assert not success
        assert message.startswith("refused: host ") and "is not PID@HOST" in message
        assert runs(record) == []
