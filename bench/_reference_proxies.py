"""Compiled reference proxies for the gateway benchmarks' ``--reference`` runs.

The gateways' throughput targets are ratios to a server on the same two cores as the load
generator and the proxy. How close any proxy can come on this machine is a measurement of its
own: nginx (``proxy_pass`` with pooled upstream connections) in front of the HTTP upstream, and
PgBouncer (session pooling) in front of PostgreSQL, each one process on loopback with the same
load as the gateway. Neither reads what it relays the way a gateway must; they are the ceiling,
not a gateway. Both come from Debian's packages (``apt-get install nginx pgbouncer``); without
them ``available`` says so and the benches leave the reference out.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

from api import free_port, listening

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream api {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""

PGBOUNCER_INI = """\
[databases]
* = host={host} port={server_port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp}/users.txt
pool_mode = session
default_pool_size = 64
max_client_conn = 256
logfile = {tmp}/pgbouncer.log
"""


def _program(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )


def available(name: str) -> str | None:
    """Why the reference ``name`` cannot run here, or None when it can."""
    if _program(name) is None:
        return f"{name} is not installed (apt-get install {name})"
    return None


@contextlib.contextmanager
def nginx(tmp: Path, upstream: str) -> Iterator[tuple[int, int]]:
    """nginx, one process, relaying to ``upstream`` (``host:port``): its ``(port, pid)``."""
    program = _program("nginx")
    assert program is not None
    home = tmp / "nginx"
    home.mkdir()
    port = free_port()
    conf = home / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=home, upstream=upstream, port=port))
    with listening([program, "-p", str(home), "-c", str(conf)], port, home / "nginx.out") as got:
        yield got


@contextlib.contextmanager
def pgbouncer(tmp: Path, host: str, server_port: int, user: str) -> Iterator[tuple[int, int]]:
    """PgBouncer in session mode in front of the server, trusting ``user``: ``(port, pid)``.
    As root it runs as the ``postgres`` account (PgBouncer refuses to run as root)."""
    program = _program("pgbouncer")
    assert program is not None
    home = tmp / "pgbouncer"
    home.mkdir()
    port = free_port()
    (home / "users.txt").write_text(f'"{user}" ""\n')
    ini = home / "pgbouncer.ini"
    ini.write_text(PGBOUNCER_INI.format(tmp=home, host=host, server_port=server_port, port=port))
    command = [program, str(ini)]
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chmod(tmp, 0o711)  # the account passes through to its own directory
        for path in (home, *home.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
        command = [program, "-u", "postgres", str(ini)]
    with listening(command, port, home / "pgbouncer.out") as started:
        yield started
