# Fake LS-DYNA for the dynalauncher test suite.  Standalone, stdlib only, Python 3.11.
# Installed by tests/fakes/__init__.py:install_fake_lsdyna() behind a `#!<sys.executable>` line,
# so the running process is named after the installed file (e.g. `lsdyna-fake`).
#
# Where each printed line comes from (samples in /work/shared/samples/lsdyna/, FORMATS.md §1):
#   R16 = lsdyna-R16.1-smp-win-4thr-normal-1cycle.messag (verbatim file)
#   R7  = lsdyna-R7.0-smp-win-1cpu-stdout-tail-normal.blog-excerpt.txt
#   MPP = lsdyna-mppDEV-10procs-input-error-termination.issue-excerpt.txt
#   HSP = lsdyna-R16.1-smp-win-4thr-normal-1cycle.d3hsp.control-cards-8-9.excerpt.txt
# - `Date:` line, version box (Version/Revision/AnLicVer/Features/Hostname/Precision),
#   `Command line options:` + continuation lines, `Input file:`, `The native file format`,
#   `Memory size from command line:`, `Beginning of keyword reader`, title echo + `ls-dyna smp d
#   R16 ...` line, `LS-DYNA will perform a structural only analysis`, `initial kinetic energy`,
#   `S t o r a g e   a l l o c a t i o n` blocks, cycle lines (`%8d t %.4E dt %.2E <event:29>
#   MM/DD/YY HH:MM:SS`, events `flush i/o buffers`, `write d3plot file`, `write d3dumpNN file`),
#   ` *** termination time reached ***`, ` N o r m a l    t e r m i n a t i o n` (+ stamp, printed
#   twice), `T i m i n g   i n f o r m a t i o n` table, `Problem time`/`Problem cycle`/`Total CPU
#   time`/`... per zone cycle`, `Number of CPU's`, `NLQ used/max`, `Start time`/`End time`,
#   `Elapsed time ... using  N SMP threads` + `(  h hour  m minute  s second )`: all R16
#   (R7 shows the same cycle/termination/timing lines).
# - MPP only: `Version : mpp d R16` (box line of MPP with the R16 release), ` MPP execution with
#   %8d procs`, ` Initial reading of file <stamp>`: MPP.
# - Errors: ` *** Error 20211 (STR+211)` block, ` *** Error 20018 (STR+18)` block (`input phase
#   completed with 1 fatal errors` / `please check messag file`), the dashed rule and
#   `  E r r o r   t e r m i n a t i o n`: MPP (used for every error; the real text for a missing
#   input file or a run-time failure is not in any sample).
# - d3hsp only: `CONTROL CARD 8/9` echo lines (termination time, termination cycle, time step
#   scale factor, dt2ms): HSP.
# UNSEEN (not in any sample; invented, kept minimal, parsers must not rely on them):
#   the sw2 status report, the acknowledgement line for swa/swb/swc/swd/lprint/nlprint/iter/
#   conv/prof, the restart line printed for r=d3dumpNN, and `using  N MPP procs` in the MPP
#   Elapsed-time line.  sw1/stop print no reason line (the real one is unseen): only the dump
#   line, the d3plot line and the normal-termination banner + timing block.
# d3kil: polled by rank 0 every 50 ms; first word, case-insensitive, trailing dot optional; the
#   file is deleted after reading.  A d3kil that stays empty for ~150 ms counts as sw1 (assumed,
#   UNSEEN); unknown words are ignored.  Restart dumps hold `t=`, `cycle=`, `endtim=`, `deck=`
#   lines, so `r=d3dumpNN` without `i=` finds its deck; dump numbering continues after NN.
#
# Command line: i=INPUT [ncpu=N] [memory=M] [r=DUMP] [other key=value ...] (keys case-insensitive).
# Deck directives: `$ fake: key=value` / `$ fake: key` comment lines (several per line allowed):
#   wall_s, startup_s, print_every_s, ignore_sigterm, exit_code, error_at_s, no_banner.
# MPI: rank from PMI_RANK / OMPI_COMM_WORLD_RANK, size from PMI_SIZE / OMPI_COMM_WORLD_SIZE.
#   Rank 0 prints, writes mes0000 and handles d3kil; it writes `.fake-lsdyna-rank0`
#   ("<pid> <ppid>") at start and `.fake-lsdyna-done` ("<exit code> <pid>") at the end.  Other
#   ranks only trust markers of a rank 0 that has the same parent (hydra_pmi_proxy / mpiexec),
#   exit with rank 0's code, or 1 if rank 0 vanished without a done marker.

import os
import re
import signal
import socket
import sys
import time
from typing import IO, NoReturn

DUMP_RE = re.compile(r"^d3dump(\d+)$", re.IGNORECASE)
RANK0_MARKER = ".fake-lsdyna-rank0"
DONE_MARKER = ".fake-lsdyna-done"
POLL_S = 0.05
DT_REF = 1.3776e-07  # R16: dt of the sample run (printed 1.38E-07)
EVENT_WIDTH = 29  # R16: event text padded so that the stamp starts at column 63
STAMP_COL = 63  # R16: `Beginning of keyword reader` / `N o r m a l ...` stamps at column 63
NZONES = 3278  # only feeds the "per zone cycle" lines
SWITCHES_ACK = {"swa", "swb", "swc", "swd", "lprint", "nlprint", "iter", "conv", "prof"}


# ---------------------------------------------------------------------------------------------
# small helpers


def stamp(ts: float | None = None) -> str:
    return time.strftime("%m/%d/%y %H:%M:%S", time.localtime(ts))


def stamp4(ts: float | None = None) -> str:
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(ts))


def parse_bool(v: str) -> bool:
    return str(v).strip().lower() not in ("0", "false", "no", "off", "")


def parse_float(text: str) -> float:
    s = text.strip().lower().replace("d", "e")
    if not s:
        return 0.0
    return float(s)


def pid_alive(pid: int, ppid: int) -> bool:
    """True if pid exists, is not a zombie and still has parent ppid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return False
    rest = data[data.rfind(")") + 2:].split()
    if not rest or rest[0] in ("Z", "X", "x"):
        return False
    try:
        return int(rest[1]) == ppid
    except (IndexError, ValueError):
        return False


def read_tokens(path: str) -> list[str] | None:
    try:
        with open(path, "r", encoding="ascii", errors="replace") as f:
            return f.read().split()
    except OSError:
        return None


def write_text_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# command line and deck


def parse_cmdline(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Return (options dict with lower-case keys, list of raw tokens for the echo)."""
    opts: dict[str, str] = {}
    raw: list[str] = []
    for tok in argv:
        raw.append(tok)
        if "=" in tok:
            k, v = tok.split("=", 1)
            opts[k.strip().lower()] = v.strip()
        else:
            opts[tok.strip().lower()] = ""
    return opts, raw


class Deck:
    """ENDTIM, title and the `$ fake:` directives (attribute = directive name)."""

    def __init__(self) -> None:
        self.endtim = 0.0
        self.title = ""
        self.wall_s = 2.0
        self.startup_s = 0.05
        self.print_every_s = 0.1
        self.ignore_sigterm = False
        self.exit_code = 0
        self.error_at_s: float | None = None
        self.no_banner = False


def parse_deck(text: str) -> Deck:
    """Parse ENDTIM, *TITLE and `$ fake:` directives.  Raises ValueError on a bad ENDTIM."""
    deck = Deck()
    lines = text.splitlines()
    # directives anywhere
    for line in lines:
        m = re.match(r"^\$\s*fake\s*:(.*)$", line.strip(), re.IGNORECASE)
        if not m:
            continue
        for item in re.split(r"[\s,;]+", m.group(1).strip()):
            if not item:
                continue
            if "=" in item:
                k, v = item.split("=", 1)
            else:
                k, v = item, "1"
            k = k.strip().lower()
            if k in ("wall_s", "startup_s", "print_every_s", "error_at_s"):
                setattr(deck, k, float(v))
            elif k == "exit_code":
                deck.exit_code = int(v)
            elif k in ("ignore_sigterm", "no_banner"):
                setattr(deck, k, parse_bool(v))
            # unknown directives are ignored
    # keywords
    i = 0
    n = len(lines)
    while i < n:
        kw = lines[i].strip().upper()
        if kw.startswith("*TITLE"):
            j = i + 1
            while j < n and lines[j].lstrip().startswith("$"):
                j += 1
            if j < n and not lines[j].startswith("*"):
                deck.title = lines[j].rstrip()
        elif kw.startswith("*CONTROL_TERMINATION"):
            j = i + 1
            while j < n and lines[j].lstrip().startswith("$"):
                j += 1
            if j < n and not lines[j].lstrip().startswith("*"):
                card = lines[j].rstrip("\r\n")
                field = card.split(",")[0] if "," in card else card[:10]
                deck.endtim = parse_float(field)
        i += 1
    return deck


# ---------------------------------------------------------------------------------------------
# output


class Out:
    """Writes every line to stdout and to the message file(s), flushing after each line."""

    def __init__(self) -> None:
        self.files: list[IO[str]] = []
        self.hsp: IO[str] | None = None  # d3hsp: also gets the control-card echo
        self.stdout_ok = True

    def open(self, mes_name: str) -> None:
        for name in (mes_name, "d3hsp"):
            try:
                f = open(name, "w", encoding="ascii", errors="replace")  # noqa: SIM115
            except OSError:
                continue
            self.files.append(f)
            if name == "d3hsp":
                self.hsp = f

    def line(self, text: str = "") -> None:
        s = text + "\n"
        if self.stdout_ok:
            try:
                sys.stdout.write(s)
                sys.stdout.flush()
            except (OSError, ValueError):
                self.stdout_ok = False
        for f in self.files:
            try:
                f.write(s)
                f.flush()
            except OSError:
                pass

    def lines(self, texts: list[str]) -> None:
        for t in texts:
            self.line(t)

    def stamped(self, text: str) -> None:
        self.line(f"{text:<{STAMP_COL}s}{stamp()}")

    def close(self) -> None:
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass
        self.files = []


def cycle_line(cycle: int, t: float, dt: float, event: str) -> str:
    return f"{cycle:8d} t {t:.4E} dt {dt:.2E} {event:<{EVENT_WIDTH}s}{stamp()}"


def box(content: str) -> str:
    return f"     |{content:<51s}|"


def banner(out: Out, mpp: bool, raw_args: list[str], opts: dict[str, str],
           input_name: str | None) -> None:
    kind = "mpp" if mpp else "smp"
    out.line()
    out.line()
    now = time.time()
    out.line(f"      Date: {time.strftime('%m/%d/%Y', time.localtime(now))}"
             f"      Time: {time.strftime('%H:%M:%S', time.localtime(now))}  ")
    out.line("      ___________________________________________________ ")
    out.line(box(""))
    out.line(box("  LS-DYNA, A Program for Nonlinear Dynamic"))
    out.line(box("  Analysis of Structures in Three Dimensions"))
    out.line(box("  Date    : 07/09/2025    Time: 09:53:35"))
    out.line(box(f"  Version : {kind} d R16"))
    out.line(box("  Revision: R16.1-180-gd50332dbe5"))
    out.line(box("  AnLicVer: 2025 R2 (20250506+dl-73-g4dde854)"))
    out.line(box(""))
    out.line(box("  Features enabled in this version:"))
    if not mpp:
        out.line(box("    Shared Memory Parallel"))
    out.line(box("    ANSYSLIC enabled"))
    out.line(box("  Issued by  : ANSYS"))
    out.line(box(""))
    out.line(box(f"  Hostname   : {socket.gethostname()[:36]}"))
    out.line(box("  Precision  : Double precision (I8R8)"))
    out.line(box(""))
    out.line(box("  Unauthorized use infringes Ansys Inc. copyrights"))
    out.line("     |___________________________________________________|")
    out.line()
    out.line()
    if raw_args:
        for k, tok in enumerate(raw_args):
            prefix = " Command line options: " if k == 0 else " " * 23
            tail = " " if k < len(raw_args) - 1 else ""
            out.line(prefix + tok + tail)
        out.line()
    if input_name is not None:
        out.line(f" Input file: {input_name:<80s}")
        out.line()
    out.line(" The native file format       : 64-bit small endian")
    mem = opts.get("memory")
    if mem:
        words = memory_words(mem)
        if words is not None:
            out.line(f" Memory size from command line:{words:12d}")
    out.line()


def memory_words(text: str) -> int | None:
    m = re.match(r"^\s*(\d+)\s*([kmg]?)\s*$", text, re.IGNORECASE)
    if not m:
        return None
    mult = {"": 1, "k": 1000, "m": 1000000, "g": 1000000000}[m.group(2).lower()]
    return int(m.group(1)) * mult


def error_block(out: Out, which: str) -> None:
    """Error text; every line is from the MPP sample."""
    if which == "runtime":
        out.lines([
            " *** Error 20211 (STR+211)",
            "     reading boundary codes for implicit springback",
            "     undefined node # 0",
            "          0 0.000E+00 0.000E+00",
            "     input phase will continue if possible -- 0",
            "",
        ])
    out.lines([
        " *** Error 20018 (STR+18)",
        "     input phase completed with 1 fatal errors",
        "     please check messag file",
        "",
        "",
        "  ----------------------------------------------------------------",
        "",
        "  E r r o r   t e r m i n a t i o n",
    ])


TIMING_ROWS = [  # R16 rows and their share of the clock time
    ("Keyword Processing ...", 0.1368),
    ("  KW Reading .........", 0.0658),
    ("  KW Writing .........", 0.0048),
    ("Initialization .......", 0.8312),
    ("  Init Proc Phase 1 ..", 0.0798),
    ("  Init Proc Phase 2 ..", 0.0135),
    ("Element processing ...", 0.0121),
    ("  Solids .............", 0.0121),
    ("Binary databases .....", 0.0034),
    ("Misc. 1 ..............", 0.0010),
    ("Misc. 3 ..............", 0.0155),
]


def hms(secs: int) -> tuple[int, int, int]:
    return secs // 3600, (secs % 3600) // 60, secs % 60


def timing_summary(out: Out, t: float, cycle: int, start_wall: list[float], ncpu: int,
                   mpp: bool, nprocs: int) -> None:
    clock = max(time.monotonic() - start_wall[0], 0.0)
    ct = os.times()
    cpu = ct.user + ct.system
    out.lines([
        "",
        " S t o r a g e   a l l o c a t i o n   ",
        "",
        " Memory required to complete solution   :     953K",
        " Additional dynamically allocated memory:      13M",
        "                                   Total:      14M",
        "",
        " T i m i n g   i n f o r m a t i o n",
        "                        CPU(seconds)   %CPU  Clock(seconds) %Clock",
        "  ----------------------------------------------------------------",
    ])
    for label, share in TIMING_ROWS:
        c = cpu * share
        k = clock * share
        out.line(f"  {label} {c:.4E}{share * 100:8.2f}     {k:.4E}{share * 100:8.2f}")
    out.line("  ----------------------------------------------------------------")
    out.line(f"  T o t a l s           {cpu:11.4E}{100.0:8.2f}     {clock:.4E}{100.0:8.2f}")
    out.line()
    cpus = round(cpu)
    h, m, s = hms(cpus)
    zc = max(cycle, 1) * NZONES
    out.lines([
        f" Problem time       ={t:14.4E}",
        f" Problem cycle      ={cycle:10d}",
        f" Total CPU time     ={cpus:10d} seconds ({h:4d} hours {m:2d} minutes {s:2d} seconds)",
        f" CPU time per zone cycle  ={cpu / zc * 1e12:15.3f} picoseconds",
        f" Clock time per zone cycle={clock / zc * 1e12:15.3f} picoseconds",
        "",
        f" Number of CPU's{ncpu:5d}",
        " NLQ used/max     192/  192",
        f" Start time   {stamp4(start_wall[1])}  ",
        f" End time     {stamp4()}  ",
    ])
    secs = int(clock)
    word = "second" if secs <= 1 else "seconds"
    if mpp:  # UNSEEN: MPP variant of the R16 Elapsed-time line
        using = f"using{nprocs:3d} MPP procs"
    else:
        using = f"using{ncpu:3d} SMP threads"
    out.line(f" Elapsed time{secs:8d} {word:<7s} for{cycle:8d} cycles {using}")
    h, m, s = hms(secs)
    out.line(f"             ({h:7d} hour {m:3d} minute {s:3d} second )")
    out.line()
    out.stamped(" N o r m a l    t e r m i n a t i o n")


# ---------------------------------------------------------------------------------------------
# the run


class Finish(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Run:
    def __init__(self, out: Out, deck: Deck, opts: dict[str, str], mpp: bool, nprocs: int,
                 start_wall: list[float]) -> None:
        self.out = out
        self.deck = deck
        self.d = deck
        self.opts = opts
        self.mpp = mpp
        self.nprocs = nprocs
        self.start_wall = start_wall
        try:
            self.ncpu = max(1, abs(int(opts.get("ncpu", "1"))))
        except ValueError:
            self.ncpu = 1
        self.endtim = max(deck.endtim, 0.0)
        self.dt = DT_REF * (self.endtim / 0.01) if self.endtim > 0 else DT_REF
        self.t0 = 0.0
        self.cycle0 = 1
        self.next_dump = 1
        self.deck_path: str | None = None
        self.t = 0.0
        self.cycle = 1

    # -- state -------------------------------------------------------------------------------
    def state_at(self, elapsed: float) -> tuple[float, int]:
        wall = self.d.wall_s
        if self.endtim <= 0:
            return self.t0, self.cycle0
        if wall <= 0:
            t = self.endtim
        else:
            t = self.t0 + self.endtim * elapsed / wall
        t = min(t, self.endtim)
        return t, self.cycle0 + int((t - self.t0) / self.dt)

    def final_state(self) -> tuple[float, int]:
        if self.endtim <= 0:  # R16 sample: ENDTIM 0 stops after cycle 1 at t = dt
            return self.dt, self.cycle0
        return self.endtim, self.cycle0 + round((self.endtim - self.t0) / self.dt)

    # -- outputs -----------------------------------------------------------------------------
    def cyc(self, event: str) -> None:
        self.out.line(cycle_line(self.cycle, self.t, self.dt, event))

    def write_d3plot(self) -> None:
        try:
            with open("d3plot", "a") as f:
                f.write(f"t={self.t!r}\n")
        except OSError:
            pass
        self.cyc("write d3plot file")

    def write_dump(self) -> None:
        name = f"d3dump{self.next_dump:02d}"
        self.next_dump += 1
        deck = os.path.abspath(self.deck_path) if self.deck_path else ""
        try:
            write_text_atomic(name, f"t={self.t!r}\ncycle={self.cycle}\nendtim={self.endtim!r}\n"
                                    f"deck={deck}\n")
        except OSError:
            pass
        self.cyc(f"write {name} file")

    def normal_end(self, reason_line: bool) -> NoReturn:
        if reason_line:
            self.out.line(" ")
            self.out.line(" *** termination time reached ***")
        self.write_dump()
        self.write_d3plot()
        self.out.line()
        self.out.stamped(" N o r m a l    t e r m i n a t i o n")
        timing_summary(self.out, self.t, self.cycle, self.start_wall, self.ncpu, self.mpp,
                       self.nprocs)
        raise Finish(self.d.exit_code)

    def error_end(self) -> NoReturn:
        self.out.line()
        error_block(self.out, "runtime")
        raise Finish(1)

    # -- sense switches ----------------------------------------------------------------------
    def poll_d3kil(self, empty_since: float | None) -> float | None:
        """Returns the new empty_since value."""
        try:
            with open("d3kil", "r", encoding="ascii", errors="replace") as f:
                content = f.read()
        except FileNotFoundError:
            return None
        except OSError:
            return empty_since
        words = content.split()
        if not words:
            # maybe caught between create and write: give the writer ~150 ms, then act as sw1
            now = time.monotonic()
            if empty_since is None:
                return now
            if now - empty_since < 3 * POLL_S:
                return empty_since
            word = "sw1"
        else:
            word = words[0].lower().rstrip(".")
        try:
            os.unlink("d3kil")
        except OSError:
            pass
        self.switch(word)
        return None

    def switch(self, word: str) -> None:
        if word == "sw1":
            self.normal_end(reason_line=False)
        elif word == "stop":
            self.out.line()
            self.out.stamped(" N o r m a l    t e r m i n a t i o n")
            timing_summary(self.out, self.t, self.cycle, self.start_wall, self.ncpu, self.mpp,
                           self.nprocs)
            raise Finish(self.d.exit_code)
        elif word == "sw2":  # UNSEEN: minimal status report
            self.out.line()
            self.out.line(f" time.......................{self.t:14.4E}")
            self.out.line(f" cycle......................{self.cycle:14d}")
            self.out.line(f" time step..................{self.dt:14.4E}")
            self.out.line()
        elif word == "sw3":
            self.write_dump()
        elif word == "sw4":
            self.write_d3plot()
        elif word in SWITCHES_ACK:  # UNSEEN acknowledgement line
            self.out.line(f" sense switch {word} received")
        # anything else: ignored

    # -- main loop ---------------------------------------------------------------------------
    def simulate(self) -> None:
        d = self.d
        # Simulated time follows a clock that stands still while the process is stopped
        # (SIGSTOP), as a real solver's does: one loop never advances it by more than 0.25 s.
        real_last = time.monotonic()
        virtual = [real_last]

        def clock() -> float:
            nonlocal real_last
            real = time.monotonic()
            virtual[0] += min(real - real_last, 0.25)
            real_last = real
            return virtual[0]

        start = clock()
        self.t, self.cycle = self.t0, self.cycle0
        self.cyc("flush i/o buffers")
        self.write_d3plot()
        every = max(d.print_every_s, 0.01)
        wall = max(d.wall_s, 0.0)
        if self.endtim > 0 and wall > 0:
            end_at = start + wall * max(self.endtim - self.t0, 0.0) / self.endtim
        else:
            end_at = start
        err_at = start + d.error_at_s if d.error_at_s is not None else None
        next_print = start + every
        next_poll = start + POLL_S
        printed = 0
        empty_since = None
        while True:
            now = clock()
            if err_at is not None and now >= err_at and err_at <= end_at:
                self.t, self.cycle = self.state_at(now - start)
                self.error_end()
            if now >= end_at:
                self.t, self.cycle = self.final_state()
                if d.no_banner:
                    raise Finish(0)
                self.normal_end(reason_line=True)
            self.t, self.cycle = self.state_at(now - start)
            if now >= next_poll:
                empty_since = self.poll_d3kil(empty_since)
                next_poll += POLL_S
                if next_poll <= now:
                    next_poll = now + POLL_S
            if now >= next_print:
                printed += 1
                if printed % 10 == 0:
                    self.write_d3plot()
                else:
                    self.cyc("flush i/o buffers")
                next_print += every
                if next_print <= now:
                    next_print = now + every
            wake = min(next_print, next_poll, end_at)
            if err_at is not None:
                wake = min(wake, err_at)
            delay = wake - clock()
            if delay > 0:
                time.sleep(delay)


# ---------------------------------------------------------------------------------------------
# ranks


def mpi_env() -> tuple[int, int] | tuple[None, None]:
    env = os.environ
    for rk, sz in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        if rk in env:
            try:
                rank = int(env[rk])
                size = int(env.get(sz, "1"))
            except ValueError:
                continue
            return rank, max(size, rank + 1)
    return None, None


def read_deck_quietly(path: str) -> Deck | None:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return parse_deck(f.read())
    except (OSError, ValueError):
        return None


def deck_path_for(opts: dict[str, str]) -> str | None:
    if opts.get("i"):
        return opts["i"]
    dump = opts.get("r")
    if dump:
        for tok in read_tokens(dump) or []:
            if tok.startswith("deck=") and len(tok) > 5:
                return tok[5:]
    return None


def other_rank(opts: dict[str, str]) -> int:
    """Rank > 0: print nothing, follow rank 0 through its marker files."""
    path = deck_path_for(opts)
    deck = read_deck_quietly(path) if path else None
    if deck is not None and deck.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ppid = os.getppid()
    rank0 = None
    deadline = time.monotonic() + 60.0
    while True:
        if rank0 is None:
            toks = read_tokens(RANK0_MARKER)
            if toks and len(toks) >= 2 and toks[1] == str(ppid) and toks[0].isdigit():
                rank0 = int(toks[0])
            elif time.monotonic() > deadline:
                return 1
        if rank0 is not None:
            code = done_code(rank0)
            if code is not None:
                return code
            if not pid_alive(rank0, ppid):
                code = done_code(rank0)
                return code if code is not None else 1
        time.sleep(POLL_S)


def done_code(rank0: int) -> int | None:
    toks = read_tokens(DONE_MARKER)
    if toks and len(toks) >= 2 and toks[1] == str(rank0):
        try:
            return int(toks[0])
        except ValueError:
            return 1
    return None


def rank0_main(opts: dict[str, str], raw: list[str], mpp: bool, nprocs: int) -> int:
    start_wall = [time.monotonic(), time.time()]
    out = Out()
    out.open("mes0000" if mpp else "messag")

    path = deck_path_for(opts)
    deck = None
    deck_text = None
    if path:
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                deck_text = f.read()
        except OSError:
            deck_text = None
    if deck_text is not None:
        try:
            deck = parse_deck(deck_text)
        except ValueError:
            deck = None
    if deck is not None and deck.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    startup = deck.startup_s if deck is not None else Deck().startup_s
    if startup > 0:
        time.sleep(startup)
    start_wall[0] = time.monotonic()

    banner(out, mpp, raw, opts, path)
    if mpp:
        out.line(f" MPP execution with{nprocs:8d} procs")
        out.line()
        out.stamped(" Initial reading of file")
    else:
        out.stamped(" Beginning of keyword reader")
    out.line()
    if deck is None:
        error_block(out, "input")
        return 1

    run = Run(out, deck, opts, mpp, nprocs, start_wall)
    run.deck_path = path
    # d3hsp-only control card echo (HSP)
    if out.hsp is not None:
        try:
            out.hsp.write("\n    CONTROL CARD 8. Computation Options-Termination\n\n"
                    f"    termination time...............................{run.endtim:14.4E}\n\n"
                    "    termination cycle..............................             0\n\n"
                    "\n    CONTROL CARD 9. Computation Options-Time Step Size \n\n"
                    "    time step scale factor.........................    0.9000E+00\n\n"
                    "    time step size for mass scaled solution, dt2ms.    0.0000E+00\n\n")
            out.hsp.flush()
        except OSError:
            pass

    out.line(f" {deck.title:<72s}" if deck.title else f" {path:<72s}")
    kind = "mpp" if mpp else "smp"
    out.line(f"                    ls-dyna {kind} d R16 R16.1_180_d50332d date 07/09/2025")
    out.line(" ")
    out.line(" LS-DYNA will perform a structural only analysis ")
    out.line()

    dump = opts.get("r")
    if dump:
        toks = read_tokens(dump)
        vals = {}
        for tok in toks or []:
            if "=" in tok:
                k, v = tok.split("=", 1)
                vals[k] = v
        try:
            run.t0 = float(vals["t"])
            run.cycle0 = int(vals.get("cycle", "1"))
        except (KeyError, ValueError):
            error_block(out, "input")
            return 1
        m = DUMP_RE.match(os.path.basename(dump))
        if m:
            run.next_dump = int(m.group(1)) + 1
        # UNSEEN restart line
        out.line(f" restart from {os.path.basename(dump)} at time {run.t0:.4E}"
                 f" cycle {run.cycle0}")
        out.line()

    out.lines([
        " initial kinetic energy = 0.00000000E+00",
        "",
        " S t o r a g e   a l l o c a t i o n   ",
        "",
        " Memory required to begin solution      :     953K",
        " Additional dynamically allocated memory:      13M",
        "                                   Total:      14M",
    ])
    try:
        run.simulate()
    except Finish as fin:
        return fin.code
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    opts, raw = parse_cmdline(argv)
    rank, size = mpi_env()
    mpp = rank is not None
    if rank is not None and rank > 0:
        return other_rank(opts)
    if mpp:
        try:
            os.unlink(DONE_MARKER)
        except OSError:
            pass
        write_text_atomic(RANK0_MARKER, f"{os.getpid()} {os.getppid()}\n")
    code = 1
    try:
        code = rank0_main(opts, raw, mpp, size or 1)
    finally:
        if mpp:
            try:
                write_text_atomic(DONE_MARKER, f"{code} {os.getpid()}\n")
            except OSError:
                pass
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
