"""Test doubles for the solvers dynalauncher runs.

``install_fake_lsdyna`` puts an executable fake LS-DYNA (see ``fake_lsdyna.py`` for what it
prints and which sample each line comes from) into a folder; ``write_deck`` writes a keyword
deck that carries the fake's behaviour as ``$ fake: key=value`` comment lines.

Deck directives understood by the fake:
    wall_s=X          wall-clock seconds from t=0 to ENDTIM (default 2.0)
    startup_s=X       delay before the banner (default 0.05)
    print_every_s=X   interval between cycle lines (default 0.1)
    ignore_sigterm    every rank ignores SIGTERM
    exit_code=N       exit code after a normal termination (default 0)
    error_at_s=X      error block + error termination at that wall time, exit 1
    no_banner         exit 0 at the end without any termination banner
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["DEFAULT_FAKE_NAME", "FAKE_LSDYNA_SOURCE", "install_fake_lsdyna", "write_deck"]

FAKE_LSDYNA_SOURCE = Path(__file__).with_name("fake_lsdyna.py")
DEFAULT_FAKE_NAME = "lsdyna-fake"  # <= 15 chars: Linux truncates comm to 15


def install_fake_lsdyna(bin_dir: Path, name: str = DEFAULT_FAKE_NAME) -> Path:
    """Write an executable fake LS-DYNA to ``bin_dir/name`` and return its path.

    The first line is ``#!<sys.executable>`` (an absolute interpreter, no env/pyenv shim), so
    the running process is named ``name`` (comm of a shebang script = the script's file name).
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    source = FAKE_LSDYNA_SOURCE.read_text(encoding="utf-8")
    if source.startswith("#!"):
        source = source.split("\n", 1)[1] if "\n" in source else ""
    target = bin_dir / name
    tmp = bin_dir / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(f"#!{sys.executable}\n{source}", encoding="utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def _fmt_value(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _endtim_field(endtim: float) -> str:
    text = repr(float(endtim))
    if len(text) > 10:
        text = f"{endtim:.4E}" if endtim >= 0 else f"{endtim:.3E}"
    return f"{text:>10s}"


def write_deck(
    path: Path,
    *,
    endtim: float = 0.01,
    wall_s: float = 2.0,
    title: str = "dynalauncher fake deck",
    **directives: object,
) -> Path:
    """Write a small but valid-looking LS-DYNA keyword deck for the fake; return ``path``.

    ``directives`` become ``$ fake: key=value`` lines; ``True`` gives a bare ``$ fake: key``,
    ``False``/``None`` leave the directive out.  ENDTIM goes in the first 10-character field of
    the ``*CONTROL_TERMINATION`` data card.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "*KEYWORD",
        "$ fake LS-DYNA directives (comments for a real LS-DYNA):",
        f"$ fake: wall_s={_fmt_value(float(wall_s))}",
    ]
    for key, value in directives.items():
        if value is None or value is False:
            continue
        if value is True:
            lines.append(f"$ fake: {key}")
        else:
            lines.append(f"$ fake: {key}={_fmt_value(value)}")
    lines += [
        "*TITLE",
        title,
        "*CONTROL_TERMINATION",
        "$#  endtim    endcyc     dtmin    endeng    endmas     nosol",
        f"{_endtim_field(endtim)}         0       0.0       0.0       0.0         0",
        "*END",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


FAKE_ANSYSEDT_SOURCE = Path(__file__).with_name("fake_ansysedt.py")


def install_fake_ansysedt(bin_dir: Path, sample: Path, name: str = "ansysedt") -> Path:
    """Write an executable fake ``ansysedt`` replaying ``sample`` to ``bin_dir/name``; return it.

    Like ``install_fake_lsdyna``: a ``#!<sys.executable>`` first line, so the process is named
    ``name`` (``ansysedt`` is in the hfss family's default process names). The second line bakes
    in ``sample`` as an absolute path, because the daemon need not pass a test's environment on
    to the solver; ``FAKE_ANSYSEDT_SAMPLE`` or a ``$ fake-sample: PATH`` line in the project
    still override it (see ``fake_ansysedt.py``).
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    source = FAKE_ANSYSEDT_SOURCE.read_text(encoding="utf-8")
    if source.startswith("#!"):
        source = source.split("\n", 1)[1] if "\n" in source else ""
    baked = f"FAKE_ANSYSEDT_BAKED_SAMPLE = {str(Path(sample).resolve())!r}\n"
    target = bin_dir / name
    tmp = bin_dir / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(f"#!{sys.executable}\n{baked}{source}", encoding="utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


FAKE_LSTC_SOURCE = Path(__file__).with_name("fake_lstc.py")


def install_fake_lstc(
    bin_dir: Path,
    *,
    qrun_r: Path,
    qrun: Path,
    qkill_output: str = "Program queued for termination",
    name_prefix: str = "",
) -> tuple[Path, Path]:
    """Write executable fakes ``lstc_qrun`` and ``lstc_qkill`` (see ``fake_lstc.py``) to
    ``bin_dir`` (named ``{name_prefix}lstc_qrun`` / ``{name_prefix}lstc_qkill``); return both paths.

    ``qrun_r`` (what ``lstc_qrun -r`` prints), ``qrun`` (what plain ``lstc_qrun`` prints) and
    ``qkill_output`` are baked in, like ``install_fake_ansysedt``: the daemon need not pass a
    test's environment on. ``FAKE_LSTC_MODE`` (fail | hang | garbage) and ``FAKE_LSTC_RECORD``
    still act at run time.
    """
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    source = FAKE_LSTC_SOURCE.read_text(encoding="utf-8")
    if source.startswith("#!"):
        source = source.split("\n", 1)[1] if "\n" in source else ""
    paths: list[Path] = []
    for role in ("qrun", "qkill"):
        baked = (
            f"FAKE_LSTC_BAKED_ROLE = {role!r}\n"
            f"FAKE_LSTC_BAKED_QRUN_R = {str(Path(qrun_r).resolve())!r}\n"
            f"FAKE_LSTC_BAKED_QRUN = {str(Path(qrun).resolve())!r}\n"
            f"FAKE_LSTC_BAKED_QKILL_OUTPUT = {qkill_output!r}\n"
        )
        name = f"{name_prefix}lstc_{role}"
        target = bin_dir / name
        tmp = bin_dir / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(f"#!{sys.executable}\n{baked}{source}", encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        paths.append(target)
    return paths[0], paths[1]
