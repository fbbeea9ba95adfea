#!/usr/bin/env python3
"""How many idle change streams (GET /api/calendar/changes) one calcache
process holds, and what they cost: resident memory per stream, Redis memory
per subscribed user, CPU while idle (heartbeats and periodic checks).

    cargo build --release
    python3 scripts/stream-capacity.py [--streams 10000] [--users 1000] [--idle-secs 60]

Starts its own calcache (release binary, 2 workers, production config)
against a fresh PostgreSQL database and Redis key prefix, with users and
sessions inserted directly (no argon2 logins), opens the streams from one
asyncio client (one TCP connection each), and stops everything it started
(by pid) and drops the database at the end. Standard library only; needs
psql and redis-cli. DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432)
and REDIS_URL (default redis://127.0.0.1:6379) are used.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def server_of(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


PG = server_of(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/calcache"))
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


def psql(db: str, sql: str, stdin: str | None = None) -> str:
    return subprocess.run(["psql", f"{PG}/{db}", "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql], input=stdin,
                          text=True, check=True, capture_output=True).stdout


def redis(*args: str) -> str:
    return subprocess.run(["redis-cli", "-u", REDIS, *args], text=True, check=True, capture_output=True).stdout


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_used_memory() -> int:
    for line in redis("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory")


def metric(port: int, name: str) -> float:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def open_stream(port: int, token: str, streams: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/calendar/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        body = await reader.read(500)
        status = head.split(b"\r\n", 1)[0].decode()
        raise RuntimeError(f"{status}: {body.decode(errors='replace')}")
    await reader.readuntil(b"event: ready")
    streams.append((reader, writer))


async def drain_heartbeats(streams: list, secs: float) -> None:
    """Reads what the server sends (heartbeats) for `secs`, as a browser would."""
    async def read(reader):
        try:
            while True:
                if not await reader.read(4096):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
    tasks = [asyncio.create_task(read(r)) for r, _ in streams]
    _, still = await asyncio.wait(tasks, timeout=secs)  # the measured idle period itself
    for t in still:
        t.cancel()
    assert len(still) == len(tasks), f"{len(tasks) - len(still)} streams ended while idle"


async def measure(args, port: int, pid: int, tokens: list[str]) -> None:
    streams: list = []
    # Warm up: one stream per worker thread's first connection, then closed.
    await asyncio.gather(*(open_stream(port, tokens[i], streams) for i in range(4)))
    for _, w in streams:
        w.close()
    streams.clear()
    open_now = lambda: metric(port, "calcache_change_streams_open")  # noqa: E731
    deadline = time.monotonic() + 30
    while open_now() != 0:  # the closes counted out before the baseline (heartbeats find them)
        assert time.monotonic() < deadline, "warm-up streams never closed"
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 0.2)  # a poll interval
        except asyncio.TimeoutError:
            pass
    base_rss, base_redis = rss_kib(pid), redis_used_memory()
    t = time.monotonic()
    batch = 100  # opens in flight at once (each checks its session in PostgreSQL)
    for start in range(0, args.streams, batch):
        await asyncio.gather(*(open_stream(port, tokens[i % len(tokens)], streams)
                               for i in range(start, min(start + batch, args.streams))))
    took = time.monotonic() - t
    rss, used = rss_kib(pid), redis_used_memory()
    cpu0 = cpu_secs(pid)
    await drain_heartbeats(streams, args.idle_secs)
    cpu = cpu_secs(pid) - cpu0
    rss_idle = rss_kib(pid)
    n = len(streams)
    print(f"streams open: {n} ({args.users} users, {n // args.users} each) in {took:.1f} s "
          f"({n / took:.0f} opens/s)")
    print(f"calcache RSS: {base_rss / 1024:.1f} MiB before, {rss / 1024:.1f} MiB with the streams, "
          f"{rss_idle / 1024:.1f} MiB after {args.idle_secs:.0f} s idle: "
          f"{(rss_idle - base_rss) * 1024 / n / 1024:.1f} KiB per stream")
    print(f"redis used_memory: +{(used - base_redis) / 1024:.0f} KiB for {args.users} subscribed users "
          f"({(used - base_redis) / args.users:.0f} B per user channel)")
    print(f"calcache CPU while idle: {cpu:.2f} s over {args.idle_secs:.0f} s "
          f"({cpu / args.idle_secs * 100:.1f} % of one core; heartbeats every 15 s, checks every 30 s)")
    for _, w in streams:
        w.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--idle-secs", type=float, default=60)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "calcache"))
    args = ap.parse_args()
    run = secrets.token_hex(5)
    db, prefix = f"calcache_cap_{run}", f"calcache_cap_{run}"
    psql("postgres", f'CREATE DATABASE "{db}"')
    env = dict(os.environ, CALCACHE_ENV="production", CALCACHE_CONFIG_DIR=str(ROOT / "config"),
               DATABASE_URL=f"{PG}/{db}", REDIS_URL=REDIS, CALCACHE__REDIS__KEY_PREFIX=prefix,
               CALCACHE__REDIS__MAC_KEY=secrets.token_hex(32), CALCACHE__LIMITS__FEED_FILLS_PER_USER="0",
               CALCACHE__SERVER__WORKERS="2", CALCACHE__LOG__FILTER="warn",
               CALCACHE__STREAM__MAX_PER_PROCESS=str(args.streams + 100),
               CALCACHE__STREAM__MAX_PER_USER=str(args.streams // args.users + 10))
    server = None
    try:
        subprocess.run([args.bin, "migrate"], env=env, check=True, capture_output=True)
        psql(db, f"INSERT INTO users (username, password_hash) SELECT 'cap' || g, 'x' FROM generate_series(1, {args.users}) g")
        ids = [int(x) for x in psql(db, "SELECT id FROM users ORDER BY id").split()]
        tokens, rows = [], []
        for uid in ids:
            token = f"{uid}.{secrets.token_urlsafe(32)[:43]}"
            tokens.append(token)
            rows.append(f"\\\\x{hashlib.sha256(token.encode()).hexdigest()}\t{uid}\t2100-01-01T00:00:00Z")
        psql(db, "COPY sessions (token_hash, user_id, expires_at) FROM STDIN", stdin="\n".join(rows) + "\n")
        port = free_port()
        server = subprocess.Popen([args.bin, "serve", "--port", str(port), "--bind", "127.0.0.1"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("calcache did not start")
                try:
                    server.wait(timeout=0.05)  # a poll interval that also notices an early exit
                    raise RuntimeError("calcache exited at start")
                except subprocess.TimeoutExpired:
                    pass
        asyncio.run(measure(args, port, server.pid, tokens))
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
        psql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        keys = redis("--scan", "--pattern", f"{prefix}*").split()
        for i in range(0, len(keys), 500):
            redis("DEL", *keys[i:i + 500])
    return 0


if __name__ == "__main__":
    sys.exit(main())
