"""Engine and sessions. SQLite by default (WAL, so the worker thread and the API can share it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Unavailable
from core.models import Base


def make_engine(url: str) -> Engine:
    """``sqlalchemy.create_engine`` is looked up per call: tracing (core/tracing.py) wraps it there."""
    create_engine = sqlalchemy.create_engine
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL's recommended level: a commit no longer waits for an fsync (one per ingested document),
            # and a killed process still loses nothing committed; only an OS crash or power cut can roll
            # back the last commits, which the start-up recovery re-drives like any unfinished document.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """Owns the engine and hands out sessions that commit on success and roll back on error."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def embedded(self) -> bool:
        """The SQLite file: the one database that creates its own tables (``core.schema``)."""
        return self.engine.dialect.name == "sqlite"

    def create_schema(self) -> None:
        """Create missing tables from the models; SQLite only, a server database changes by migrations."""
        if not self.embedded:
            raise RuntimeError("Only the embedded SQLite database creates its tables; migrate this one instead.")
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Commits on success, rolls back on error; an unreachable database becomes a retryable 503."""
        session = self._factory()
        try:
            yield session
            session.commit()
        except (OperationalError, InterfaceError) as exc:
            session.rollback()
            if exc.connection_invalidated or _is_connection_error(exc):
                raise Unavailable("The database is unreachable; retry in a few seconds.") from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _is_connection_error(exc: OperationalError | InterfaceError) -> bool:
    """Connection failures, as opposed to e.g. a locked SQLite file or a bad statement."""
    text = str(exc.orig).lower()
    return any(marker in text for marker in ("connection", "could not connect", "server closed", "timeout expired"))
