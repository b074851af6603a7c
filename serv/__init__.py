"""dynalauncher: a job launcher daemon for CAE solvers (see README.md)."""

__version__ = "0.1.0"
