"""Helpers the benchmark scripts share: the scratch database, the server and machine they ran on,
the CPU seconds of this process and of its PostgreSQL backend, and plain members inserted set-based.

Import after django.setup(): `from bench.common import …` (each script puts the repository root on
sys.path first). What differs between scripts in meaning or output (resetting tables, timing and
printing a step, the load average's format, waiting for a quiet machine) stays in the scripts.
"""

import os
import platform
import sys
import time
from pathlib import Path

from django.db import connection

from members.models import Member


def ensure_database() -> None:
    """Create the PostgreSQL database DATABASE_URL names if it is missing (through database postgres)."""
    settings = connection.settings_dict
    if connection.vendor != "postgresql":
        sys.exit(f"{Path(sys.argv[0]).stem} measures PostgreSQL: set DATABASE_URL=postgres://…")
    import psycopg

    with psycopg.connect(
        dbname="postgres",
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        autocommit=True,
    ) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [settings["NAME"]]).fetchone():
            admin.execute(f'CREATE DATABASE "{settings["NAME"]}"')


def members_insert(cursor, count: int, *, prefix: str, at) -> None:
    """`count` plain members, external ids prefix1 … prefixN, created and joined at `at`: one INSERT … SELECT."""
    cursor.execute(
        f"""
        INSERT INTO {Member._meta.db_table} (created_at, updated_at, external_id, name, phone, email, gender, city,
                                             channel, joined_at, sms_opt_out, email_opt_out, wecom_opt_out, notes,
                                             orders_count, total_spent)
        SELECT %s, %s, %s::text || n, '会员' || n, NULL, '', 'unknown', '上海', 'wecom', %s, FALSE, FALSE, FALSE,
               '', 0, 0
        FROM generate_series(1, %s) AS n
        """,
        [at, at, prefix, at, count],
    )


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def backend_cpu() -> float:
    """User + system CPU seconds of this connection's PostgreSQL backend so far; NaN where /proc
    does not show it (a server on another host)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        # utime and stime, fields 14 and 15 of proc(5), counted after the ")" that ends field 2
        # (the process name in parentheses may hold spaces).
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its PostgreSQL backend so far."""
    server = backend_cpu()
    return time.process_time(), server
