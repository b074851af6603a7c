"""Solver families, one module each; `family_of` is the only registry."""

from __future__ import annotations

from serv.core.jobs import Family
from serv.solvers.base import SolverFamily
from serv.solvers.calculix import CalculiX
from serv.solvers.generic import Generic
from serv.solvers.hfss import Hfss
from serv.solvers.lsdyna import LsDyna

FAMILIES: dict[Family, SolverFamily] = {
    Family.LSDYNA: LsDyna(),
    Family.HFSS: Hfss(),
    Family.CALCULIX: CalculiX(),
    Family.GENERIC: Generic(),
}


def family_of(family: Family) -> SolverFamily:
    """The implementation of `family`."""
    return FAMILIES[family]
