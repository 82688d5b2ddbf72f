"""``piigate audit ...``: the tamper-evident audit trail."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from piigate.cli.common import ConfigOpt, fail, run, settings_from, with_store

if TYPE_CHECKING:
    from piigate.audit.chain import ChainReport
    from piigate.store import Store

__all__ = ["audit_app"]

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None) -> None:
    """Verify the audit hash chain: exit 0 'ok N events', or exit 1 naming the first bad seq."""
    from piigate.audit.log import AuditLog
    from piigate.clock import SystemClock

    settings = settings_from(config)
    if settings.database_url is None and not (settings.data_dir / "piigate.db").exists():
        # Verifying must not create an empty store and call it intact.
        fail(f"no piigate database under {settings.data_dir} (set PIIGATE_DATA_DIR or --config)")

    async def work(store: Store) -> ChainReport:
        return await AuditLog(store.db, SystemClock()).verify()

    report = run(with_store(settings, work))
    if report.ok:
        typer.echo(f"ok {report.count} events")
        return
    where = f"seq {report.first_bad_seq}" if report.first_bad_seq is not None else "the chain head"
    fail(f"audit chain broken at {where}: {report.reason} ({report.count} events checked)")
