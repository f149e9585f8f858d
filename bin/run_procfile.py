#!/usr/bin/env python
"""Run the processes of a Procfile together in the foreground and stop them all cleanly.

    python bin/run_procfile.py [Procfile]

`make run` uses it for web + Celery worker + Celery beat. Each process runs in a process group
of its own and its output is printed with its name in front. When one process exits, or on
Ctrl-C or SIGTERM, every process gets SIGTERM on its leader only, so that Celery does its warm
shutdown (it finishes the task at hand and stops its own pool) instead of having its pool
killed under it. Once a leader is gone, what is left of its group (runserver's autoreloader
child) gets SIGTERM too. Anything still running after the grace period, or at a second Ctrl-C,
gets SIGKILL.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GRACE_SECONDS = 30


def read_procfile(path: Path) -> dict[str, str]:
    processes = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


class Runner:
    def __init__(self, processes: dict[str, str]):
        self.processes = processes
        self.width = max(len(name) for name in [*processes, "system"])
        self.children: dict[str, subprocess.Popen] = {}
        self.output_lock = threading.Lock()
        self.stop_requested = False
        self.force = False

    def say(self, name: str, text: str) -> None:
        with self.output_lock:
            sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {text}\n")
            sys.stdout.flush()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        try:
            for name, command in self.processes.items():
                self.start(name, command)
            first_exit = self.wait_for_first_exit()
            self.stop_all()
        finally:
            self.kill_groups()
        return first_exit

    def start(self, name: str, command: str) -> None:
        child = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.children[name] = child
        threading.Thread(target=self.relay_output, args=(name, child), daemon=True).start()
        self.say("system", f"{name} started (pid {child.pid}): {command}")

    def relay_output(self, name: str, child: subprocess.Popen) -> None:
        for raw in child.stdout:
            self.say(name, raw.decode(errors="replace").rstrip("\n"))

    def on_signal(self, signum, frame) -> None:
        if self.stop_requested:
            self.force = True
            return
        self.stop_requested = True

    def wait_for_first_exit(self) -> int:
        """0 when stopped on request. A process that ends by itself fails the run: its exit code,
        128 + the signal that killed it, or 1 if it ended with 0."""
        while not self.stop_requested:
            for name, child in self.children.items():
                if child.poll() is not None:
                    self.say("system", f"{name} exited with code {child.returncode}; stopping the others")
                    code = child.returncode
                    return 128 - code if code < 0 else code or 1
            time.sleep(0.2)
        return 0

    def stop_all(self) -> None:
        self.say("system", f"stopping (waiting up to {GRACE_SECONDS} s; Ctrl-C again to kill at once)")
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        reported: set[str] = set()
        while time.monotonic() < deadline and not self.force:
            running = False
            for name, child in self.children.items():
                if child.poll() is None:
                    running = True
                    continue
                if name not in reported:
                    reported.add(name)
                    self.say("system", f"{name} stopped (code {child.returncode})")
                running |= self.signal_group(child.pid, signal.SIGTERM)
            if not running:
                return
            time.sleep(0.2)

    def kill_groups(self) -> None:
        for child in self.children.values():
            if self.signal_group(child.pid, signal.SIGKILL):
                self.say("system", f"killed what was left of process group {child.pid}")
            child.wait()

    @staticmethod
    def signal_group(pgid: int, signum: int) -> bool:
        """Send a signal to a process group; False when the group has no process left."""
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def main() -> None:
    procfile = Path(sys.argv[1] if len(sys.argv) > 1 else "Procfile")
    sys.exit(Runner(read_procfile(procfile)).run())


if __name__ == "__main__":
    main()
