"""The local Ray head of `agentml serve` when no RAY_ADDRESS is given: one `ray start --head --block` in its own
process, started once (under a lock) when the first run needs it, watched, restarted for the next run after it
died, and stopped with the API.

The API never trains: every run is a Ray job on this head (or on the cluster RAY_ADDRESS names). The head runs
behind a guard process (`python -m service.ray_head guard ...`) that:
- stops the head when the API process is gone, even after `kill -9` (Ray's own `--block` mode then takes its
  subprocesses down with it: kernel fate sharing), and
- kills every process left over from this head (job drivers, workers) once the head ends, found by a marker variable
  (AGENTML_RAY_HEAD) in their environment, which every process of the head inherits.

The head listens on loopback only, with Ray's token authentication on (a fresh token per head), and offers
`run_slots` units of the custom resource `agentml_run_slot`: each run's job asks for one, so Ray itself queues runs
beyond that many (as PENDING jobs) instead of running them all at once on a small machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("agentml.ray_head")

HEAD_ENV = "AGENTML_RAY_HEAD"  # marker in the environment of every process of a head we started
RUN_SLOT = "agentml_run_slot"  # custom resource: one per run that may execute at once
# Ray's ports that default to fixed numbers: another Ray on this machine (a test's, a user's) may hold them
_FIXED_PORTS = ("port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                "runtime-env-agent-port", "metrics-export-port", "ray-client-server-port", "node-manager-port",
                "object-manager-port")


class HeadError(Exception):
    """The local Ray head could not be started (its log says why)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Head:
    """A running head: its job API address (the dashboard, on loopback) and the token its clients send."""

    address: str
    token: str
    marker: str
    temp_dir: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_executable() -> str:
    """The `ray` script next to this interpreter (a virtual environment's, even when it is not activated)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def head_command(temp_dir: str, *, num_cpus: int, run_slots: int) -> list[str]:
    """`ray start --head --block` on loopback, every port chosen free, `run_slots` run slots."""
    ports = [f"--{name}={_free_port()}" for name in _FIXED_PORTS]
    return [ray_executable(), "start", "--head", "--block", *ports, f"--num-cpus={num_cpus}",
            f"--resources={json.dumps({RUN_SLOT: run_slots})}", "--include-dashboard=true",
            "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
            "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0"]


def dashboard_port(command: Sequence[str]) -> int:
    return int(next(a for a in command if a.startswith("--dashboard-port=")).split("=", 1)[1])


class LocalRayHead:
    """Starts (once), watches and stops the API's own Ray head. Thread-safe: concurrent `ensure()` calls start one."""

    def __init__(self, *, num_cpus: int | None = None, run_slots: int = 2, start_timeout_s: float = 120.0,
                 log_dir: Path | None = None) -> None:
        self.num_cpus = num_cpus or os.cpu_count() or 2
        self.run_slots = run_slots
        self.start_timeout_s = start_timeout_s
        self.log_dir = log_dir
        self._lock = threading.Lock()
        self._guard: subprocess.Popen[bytes] | None = None
        self._head: Head | None = None
        self._death: str | None = None  # why the last head died, until `died()` says it
        self.starts = 0  # heads started by this process (a restart after a crash counts)

    @property
    def head(self) -> Head | None:
        """The head while it runs (None before the first start and after it died)."""
        return self._head if self._guard is not None and self._guard.poll() is None else None

    def ensure(self) -> Head:
        """The running head, started now when there is none (or the last one died). Raises HeadError."""
        with self._lock:
            if self._guard is not None and self._guard.poll() is None and self._head is not None:
                return self._head
            self._bury()
            self._head = self._start()
            return self._head

    def died(self) -> str | None:
        """Why the last head this process started is gone (None while it runs or when none was started). Says it
        once, also when `ensure()` already started the next head."""
        with self._lock:
            self._bury()
            reason, self._death = self._death, None
            return reason

    def wait_gone(self, head: Head, timeout_s: float) -> bool:
        """Wait until `head` is not the running head any more (its guard ended): True, else False after
        `timeout_s`. A head that lost a process stops answering a moment before `ray start --block` notices."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._head is not head or self._guard is None or self._guard.poll() is not None:
                    return True
            time.sleep(0.2)
        return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the head and everything it started (the API is stopping)."""
        with self._lock:
            self._stop_guard(timeout_s)
            self._forget()

    # ---- internals ----------------------------------------------------------------------------------------------
    def _bury(self) -> None:
        """Forget a head whose guard ended, remembering why for `died()`."""
        if self._guard is not None and self._guard.poll() is not None:
            self._death = f"the local Ray head stopped (exit code {self._guard.returncode})"
            self._forget()

    def _stop_guard(self, timeout_s: float) -> None:
        guard, head = self._guard, self._head
        if guard is not None and guard.poll() is None:
            guard.send_signal(signal.SIGTERM)  # the guard stops Ray and sweeps the leftovers
            try:
                guard.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(guard.pid, signal.SIGKILL)
                guard.wait(10)
        if head is not None:
            kill_marked(head.marker)

    def _forget(self) -> None:
        if self._head is not None:
            kill_marked(self._head.marker)  # a dead head's job drivers must not write to the store any more
            shutil.rmtree(self._head.temp_dir, ignore_errors=True)
        self._guard, self._head = None, None

    def _start(self) -> Head:
        temp = tempfile.mkdtemp(prefix="agentml-ray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
        command = head_command(temp, num_cpus=self.num_cpus, run_slots=self.run_slots)
        head = Head(f"http://127.0.0.1:{dashboard_port(command)}", secrets.token_hex(32), secrets.token_hex(8), temp)
        env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head.token,
               HEAD_ENV: head.marker, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        log_path = (self.log_dir or Path(temp)) / f"ray-head-{head.marker}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        guard_cmd = [sys.executable, "-m", "service.ray_head", "guard", "--parent", str(os.getpid()),
                     "--marker", head.marker, "--", *command]
        with open(log_path, "ab") as out:
            self._guard = subprocess.Popen(guard_cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        log.info("starting a local Ray head (%s, log %s)", head.address, log_path)
        try:
            self._wait_up(head, log_path)
        except HeadError:  # a head that never answered is not left running
            self._stop_guard(30.0)
            kill_marked(head.marker)
            self._guard = None  # its temp folder stays: the error names the log inside it
            raise
        return head

    def _wait_up(self, head: Head, log_path: Path) -> None:
        import httpx

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._guard is None or self._guard.poll() is not None:
                raise HeadError(f"the local Ray head exited while starting (see {log_path})",
                                hint="read the log; is another Ray using the same temp folder, or memory short?")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{head.address}/api/jobs/", headers=head.headers, timeout=3).status_code == 200:
                    return
            time.sleep(0.5)
        raise HeadError(f"the local Ray head did not answer within {self.start_timeout_s:.0f} s (see {log_path})",
                        hint="the machine may be overloaded; retry, or start Ray yourself and set RAY_ADDRESS")


def marked_pids(marker: str) -> list[int]:
    """This user's processes whose environment carries HEAD_ENV=marker (only a head we started sets it)."""
    needle = f"{HEAD_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def kill_marked(marker: str) -> None:
    """SIGKILL every leftover process of the head `marker`."""
    for pid in marked_pids(marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------------ the guard


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _terminated() -> Iterator[threading.Event]:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def guard(parent: int, marker: str, command: Sequence[str], poll_s: float = 0.5) -> int:
    """Run `command` (the head) until it ends, this guard is told to stop (SIGTERM), or `parent` (the API) is gone;
    then stop it and kill every process left over from it."""
    head = subprocess.Popen(list(command))
    with _terminated() as stop:
        while head.poll() is None and _alive(parent) and not stop.wait(poll_s):
            pass
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes; they also share its fate
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(10)
    kill_marked(marker)
    return head.returncode or 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.ray_head", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("guard", help="run a Ray head until the parent process is gone")
    run.add_argument("--parent", type=int, required=True, help="pid of the API process")
    run.add_argument("--marker", required=True, help=f"the value of {HEAD_ENV} of this head's processes")
    run.add_argument("head", nargs=argparse.REMAINDER, help="-- then the head's command line")
    args = parser.parse_args(argv)
    command = args.head[1:] if args.head[:1] == ["--"] else args.head
    return guard(args.parent, args.marker, command)


if __name__ == "__main__":
    sys.exit(main())
