"""``piigate db ...``: the store's schema."""

from __future__ import annotations

import typer

from piigate.cli.common import ConfigOpt, run, settings_from

__all__ = ["db_app"]

db_app = typer.Typer(
    help="The store (SQLite by default, PostgreSQL in production).", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations (serve also does this on start)."""
    from piigate.store import Database

    settings = settings_from(config)

    async def work() -> str | None:
        db = Database.open(settings.store_url)
        try:
            await db.upgrade()
            return await db.current_revision()
        finally:
            await db.close()

    revision = run(work())
    typer.echo(f"database at revision {revision}")
