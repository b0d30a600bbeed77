"""db.connect, the one connection helper: our settings are defaults, the DSN's (its service
file's, the PG* variables') are kept, as libpq keeps them over its own."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from helpers import tcp_settings
from pgperfmon import alerting, db
from pgperfmon.heartbeat import Heartbeat

OURS = {"keepalive": 1, "idle_s": 30, "interval_s": 10, "count": 3, "user_timeout_ms": 60_000}


def settings(conn: psycopg.Connection) -> tuple[str, str | None]:
    """The session's application_name, as the server has it, and the connect_timeout used."""
    name = conn.execute("SHOW application_name").fetchone()[0]
    return name, conn.info.get_parameters().get("connect_timeout")


def test_our_settings_where_the_dsn_gives_none(dsn: str) -> None:
    with db.connect(dsn) as conn:
        assert settings(conn) == ("pgperfmon", "10")
        assert tcp_settings(conn) == OURS


def test_the_dsns_own_settings_are_kept(dsn: str) -> None:
    # A DBA's connect_timeout for a slow link and the application_name their
    # pg_stat_activity accounting groups by were replaced by 10 s and "pgperfmon".
    own = make_conninfo(dsn, connect_timeout="30", application_name="accounting", keepalives_idle="7")
    with db.connect(own) as conn:
        assert settings(conn) == ("accounting", "30")
        assert tcp_settings(conn) == {**OURS, "idle_s": 7}


def test_the_environment_settings_are_kept(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGAPPNAME", "from-env")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "45")
    with db.connect(dsn) as conn:
        assert settings(conn) == ("from-env", "45")


def test_a_service_files_settings_are_kept(dsn: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # service= is expanded by libpq from pg_service.conf: its values were overridden as well.
    service = tmp_path / "pg_service.conf"
    service.write_text("[slowlink]\n" + "".join(f"{k}={v}\n" for k, v in conninfo_to_dict(dsn).items())
                       + "connect_timeout=30\napplication_name=accounting\ntcp_user_timeout=5000\n")
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    with db.connect("service=slowlink") as conn:
        assert settings(conn) == ("accounting", "30")
        assert tcp_settings(conn) == {**OURS, "user_timeout_ms": 5000}
    monkeypatch.setenv("PGSERVICE", "slowlink")  # the service named by the environment
    with db.connect("") as conn:
        assert settings(conn) == ("accounting", "30")
    with db.connect("service=slowlink application_name=mine") as conn:  # the DSN over its service
        assert settings(conn) == ("mine", "30")


def test_a_service_not_found_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pg_service.conf").write_text("[other]\nhost=127.0.0.1\n")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "pg_service.conf"))
    with pytest.raises(db.ConnectError, match='definition of service "nosuch" not found'):
        db.connect("service=nosuch")


# The long-lived sessions of the agent, the heartbeat sender and the alert deliverer had no
# keepalives: with the network to the server blackholed they waited the kernel's two hours.

def test_the_heartbeat_session_gives_up_on_a_silent_server(installed: str) -> None:
    with Heartbeat(make_conninfo(installed, keepalives_interval="4"), agent="billing-worker") as hb:
        assert tcp_settings(hb._connection()) == {**OURS, "interval_s": 4}


def test_the_deliverers_sessions_give_up_on_a_silent_server(installed: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, int]] = []
    real_connect = db.connect

    def connect(dsn: str, **kwargs: object) -> psycopg.Connection:
        conn = real_connect(dsn, **kwargs)
        seen.append(tcp_settings(conn))
        return conn

    monkeypatch.setattr(db, "connect", connect)
    alerting.run_deliverer(installed, once=True, poll_seconds=1, worker="keepalive",
                           echo=lambda _: None, env={}, stop=threading.Event())
    assert seen == [OURS, OURS]  # the one that delivers and the one that listens


def test_a_failure_names_the_server_of_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The message named the PG* variables' server (or "local socket:5432"), not the one the
    # service= sends libpq to.
    (tmp_path / "pg_service.conf").write_text("[gone]\nhost=127.0.0.1\nport=1\nuser=ops\ndbname=app\n")
    monkeypatch.setenv("PGSERVICEFILE", str(tmp_path / "pg_service.conf"))
    with pytest.raises(db.ConnectError, match=r"^cannot connect to ops@127\.0\.0\.1:1/app: "):
        db.connect("service=gone")
