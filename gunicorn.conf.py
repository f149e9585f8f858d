"""gunicorn settings of the web process; gunicorn reads this file when started from the project root:

    DJANGO_SETTINGS_MODULE=crm.settings.production .venv/bin/gunicorn crm.wsgi

Two workers of two threads (gthread) on the 2-core machine: while one request waits on PostgreSQL
or Redis the other runs. Each thread keeps one PostgreSQL connection (CONN_MAX_AGE) on which the
partner API's member read stays prepared. Measured with bench/bench_api.py (docs/PERFORMANCE.md,
"Partner API (issue 6)"), a member read cost less CPU per request with 2 threads than with 3 or
4 (fewer GIL hand-offs and PostgreSQL backends to switch between) and than with 4 single-thread
workers. A bigger machine sets WEB_CONCURRENCY to about its core count. No access log: its
request lines carry member numbers.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections
# over them. On one shared socket whichever worker wakes first accepts: 32 keep-alive clients
# opening at once were seen split 32/0 and 3/29, one process (one GIL) serving them all while
# the other idled.
reuse_port = True
# Partner systems send request after request on one connection; keep it open between them.
keepalive = 5
# A worker stuck longer than this (a runaway request) is replaced.
timeout = 60
graceful_timeout = 30
