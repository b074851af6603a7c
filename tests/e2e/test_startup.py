"""Issue #3 items 1–4, 8: start-up of the real `launcher.py`: --port 0, bad config, a DB in
use or unusable, non-loopback binding — each a clear message, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

from serv.client import Client
from tests.conftest import DEADLINE, ROOT, DaemonProcess, Env


def run_launcher(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "launcher.py"), *args], cwd=cwd, capture_output=True, text=True,
        timeout=DEADLINE, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(cwd)},
    )


class TestStartup:
    async def test_port_zero_binds_a_free_port_and_logs_its_url(self, daemon_process: Callable[..., DaemonProcess]) -> None:
        proc = daemon_process()
        url = proc.start()
        assert url.startswith("ws://127.0.0.1:") and not url.endswith(":0/")
        async with Client(url) as client:
            assert (await client.call("getSystemHealth"))["db_ok"] is True

    def test_bad_config_value_stops_start_naming_key_and_file(self, tmp_path: Path) -> None:
        config = tmp_path / "bad.toml"
        config.write_text('[watchdog]\ninterval_s = "fast"\n')
        done = run_launcher("--config", str(config), "--db", str(tmp_path / "jobs.db"), cwd=tmp_path)
        assert done.returncode == 2
        assert str(config) in done.stderr and "interval_s" in done.stderr and "fast" in done.stderr
        assert "Traceback" not in done.stderr

    def test_unknown_config_key_and_toml_syntax_errors_are_named(self, tmp_path: Path) -> None:
        config = tmp_path / "bad.toml"
        config.write_text("[jobs]\nstop_grace = 3\n")
        done = run_launcher("--config", str(config), cwd=tmp_path)
        assert done.returncode == 2 and "stop_grace" in done.stderr and "Traceback" not in done.stderr
        config.write_text("[jobs\n")
        done = run_launcher("--config", str(config), cwd=tmp_path)
        assert done.returncode == 2 and "line 1" in done.stderr and "Traceback" not in done.stderr

    def test_non_loopback_host_without_token_refuses_to_start(self, tmp_path: Path) -> None:
        done = run_launcher("--host", "0.0.0.0", "--db", str(tmp_path / "jobs.db"), cwd=tmp_path)
        assert done.returncode == 2 and "token" in done.stderr and "Traceback" not in done.stderr

    def test_database_in_use_by_another_daemon_is_a_clear_error(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        daemon_process().start()
        done = run_launcher("--config", str(env.config_path), "--port", "0", cwd=env.tmp)
        assert done.returncode == 3
        assert "in use by another dynalauncher" in done.stderr and "Traceback" not in done.stderr

    def test_database_path_under_a_file_is_a_clear_error(self, tmp_path: Path) -> None:
        (tmp_path / "afile").write_text("x")
        done = run_launcher("--db", str(tmp_path / "afile" / "jobs.db"), "--port", "0", cwd=tmp_path)
        assert done.returncode == 3
        assert "afile" in done.stderr and "Traceback" not in done.stderr

    def test_garbage_database_file_is_a_clear_error(self, tmp_path: Path) -> None:
        db = tmp_path / "jobs.db"
        db.write_bytes(b"this is not sqlite" * 100)
        done = run_launcher("--db", str(db), "--port", "0", cwd=tmp_path)
        assert done.returncode == 3 and str(db) in done.stderr and "Traceback" not in done.stderr

    async def test_older_database_is_migrated_in_place_and_listed(self, env: Env, daemon_process: Callable[..., DaemonProcess]) -> None:
        """The checked-in schema-0001 file is upgraded at start and its jobs are listed."""
        import shutil

        shutil.copy(ROOT / "tests" / "data" / "jobs-v0001.db", env.tmp / "jobs.db")
        proc = daemon_process()
        url = proc.start()
        assert any("migrated" in line for line in proc.log_lines)
        async with Client(url) as client:
            jobs = await client.call("listJobs")
        assert len(jobs) == 2


class TestCli:
    """contract.md § Command line: the console script serves and its client subcommands work."""

    async def test_console_script_serves_and_client_subcommands_work(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        import asyncio
        import json
        import os

        exe = Path(sys.executable).parent / "dynalauncher"
        assert exe.exists(), "the console script `dynalauncher` is installed with the package"
        server = subprocess.Popen(
            [str(exe), "serve", "--config", str(env.config_path), "--port", "0"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"},
        )
        try:
            assert server.stderr is not None
            url = None
            while url is None:
                line = await asyncio.wait_for(asyncio.to_thread(server.stderr.readline), DEADLINE)
                assert line, "dynalauncher serve exited before listening"
                if "listening on ws://" in line:
                    url = line.split("listening on ")[1].strip()

            def cli(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([str(exe), *args, "--url", url], capture_output=True, text=True, timeout=DEADLINE)

            deck = env.deck(wall_s=60)
            submitted = await asyncio.to_thread(cli, "submit", "--solver", "fake-smp", "--json", str(deck))
            assert submitted.returncode == 0, submitted.stderr
            job = json.loads(submitted.stdout)
            listed = await asyncio.to_thread(cli, "ls")
            assert str(deck) in listed.stdout
            shown = await asyncio.to_thread(cli, "show", str(job["id"]), "--json")
            assert json.loads(shown.stdout)["id"] == job["id"]
            stopped = await asyncio.to_thread(cli, "stop", str(job["id"]), "--force", "--json")
            assert json.loads(stopped.stdout)["status"] in ("stopping", "stopped", "cancelled")
            missing = await asyncio.to_thread(cli, "show", "999")
            assert missing.returncode == 1 and "1001" in missing.stderr
            bad = await asyncio.to_thread(subprocess.run, [str(exe), "ls", "--url", "ws://127.0.0.1:1/"],
                                          capture_output=True, text=True, timeout=DEADLINE)
            assert bad.returncode == 1 and "cannot reach" in bad.stderr and "Traceback" not in bad.stderr
        finally:
            server.terminate()
            server.wait(timeout=DEADLINE)


class TestOrphansAtStart:
    async def test_clean_orphans_at_start_is_scoped_to_allowed_roots(
        self, env: Env, daemon_process: Callable[..., DaemonProcess]
    ) -> None:
        """--clean-orphans-at-start kills an untagged solver under jobs.allowed_roots (here the test's tmp)."""
        from tests.fakes import write_deck

        env.extra_config = ""
        folder = env.tmp / "runs" / "left-behind"
        write_deck(folder / "main.k", wall_s=120)
        orphan = subprocess.Popen([str(env.bin_dir / "lsdyna-fake"), "i=main.k"], cwd=folder,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            text = env.config_path.read_text().replace("[jobs]\n", f'[jobs]\nallowed_roots = ["{env.tmp}"]\n')
            config = env.tmp / "scoped.toml"
            config.write_text(text)
            proc = daemon_process(["--clean-orphans-at-start"])
            proc.start_with(config)
            assert orphan.wait(timeout=DEADLINE) == -9
            assert any("killed 1 orphan" in line and str(env.tmp) in line for line in proc.log_lines)
        finally:
            if orphan.poll() is None:
                orphan.kill()
                orphan.wait()
