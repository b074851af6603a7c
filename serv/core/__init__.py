"""The pure core: job states, records, core allocation, admission and recovery rules.

Nothing in this package does I/O, reads a clock, or imports an edge module (asyncio,
psutil, sqlalchemy, websockets, subprocess); `tests/core/test_purity.py` enforces it.
"""
