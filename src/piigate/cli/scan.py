"""``piigate scan postgres DSN``: find the columns that hold PII and write a catalog to review.

Each table in the user schemas is sampled (``store/sampling.py``: read-only, with timeouts), each
column labelled by name and values (``gateway/postgres/detect.py``), and the catalog written as
the PostgreSQL gateway reads it (``gateway/postgres/catalog_file.py``). Sampled values stay in
this process: no output, warning or error quotes one.

The classes are the policy's: a detector runs only when the policy defines the class it proposes
(by name), so the catalog always loads against that policy.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from piigate.cli.common import ConfigOpt, fail

if TYPE_CHECKING:
    from piigate.gateway.postgres.catalog_file import ScannedTable
    from piigate.gateway.postgres.detect import Detector
    from piigate.policy import Policy
    from piigate.store.sampling import SampledTable

__all__ = ["scan_app"]

scan_app = typer.Typer(
    help="Find PII in a database and write a catalog for the gateway to review.",
    no_args_is_help=True,
)


@scan_app.command("postgres")
def postgres(
    dsn: Annotated[
        str, typer.Argument(help="The database: postgresql://user@host:port/db or key=value.")
    ],
    sample: Annotated[int, typer.Option("--sample", min=1, help="Rows sampled per table.")] = 200,
    out: Annotated[
        str | None, typer.Option("--out", help="Write the catalog to this file (default: stdout).")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="Policy file whose PII classes to use (or PIIGATE_POLICY)."),
    ] = None,
    config: ConfigOpt = None,
    schema: Annotated[
        list[str] | None,
        typer.Option("--schema", help="Scan only this schema (repeatable; default: all)."),
    ] = None,
    region: Annotated[
        str, typer.Option(help="Country of phone numbers written without a country code.")
    ] = "US",
    timeout: Annotated[
        float, typer.Option(min=0.1, help="statement_timeout per table, in seconds.")
    ] = 30.0,
) -> None:
    """Sample every table and write a catalog of PII columns (``catalog_file``) for review."""
    import phonenumbers

    from piigate.store.sampling import ScanUnavailable, display_dsn, sample_tables

    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        fail(f"--region {region!r} is not a country code phonenumbers knows (US, GB, DE, ...)")
    loaded = _policy(policy, config)
    detectors = _detectors(loaded)
    try:
        where = display_dsn(dsn)
        scanned = [
            _label(table, detectors, region=region.upper())
            for table in sample_tables(
                dsn, rows=sample, schemas=schema or (), statement_timeout_ms=int(timeout * 1000)
            )
        ]
    except ScanUnavailable as exc:
        fail(str(exc))
    text = _render(scanned, where=where, sample=sample)
    if out is None:
        typer.echo(text, nl=False)
    else:
        _write(out, text)
    columns = [label for table in scanned for label in table.labels]
    suspected = sum(label.suspected for label in columns)
    tables = sum(bool(table.labels) for table in scanned)
    target = f"; catalog written to {out}" if out is not None else ""
    typer.echo(
        f"piigate: scanned {len(scanned)} tables of {where}: {len(columns)} PII columns in "
        f"{tables} tables, {suspected} suspected{target}",
        err=True,
    )


def _policy(path: str | None, config: str | None) -> Policy:
    """The policy named by ``--policy``, else ``--config``'s, else ``PIIGATE_POLICY``."""
    from piigate.config import load_settings
    from piigate.policy import load_policy

    if path is None:
        path = load_settings(config).policy_path
    if path is None:
        fail("no policy: pass --policy FILE (or --config FILE), or set PIIGATE_POLICY")
    return load_policy(path)


def _detectors(policy: Policy) -> list[Detector]:
    """The detectors whose class the policy defines; a note on stderr for each one left out."""
    from piigate.gateway.postgres.detect import Detector

    known = {str(d) for d in Detector}
    for name in sorted(set(policy.pii) - known):
        typer.echo(
            f"piigate: note: no detector for PII class {name!r}: catalog such columns by hand",
            err=True,
        )
    used = [d for d in Detector if str(d) in policy.pii]
    for skipped in (d for d in Detector if d not in used):
        typer.echo(
            f"piigate: note: the policy has no PII class {str(skipped)!r}: not looked for",
            err=True,
        )
    return used


def _label(table: SampledTable, detectors: list[Detector], *, region: str) -> ScannedTable:
    from piigate.gateway.postgres.catalog import TableName
    from piigate.gateway.postgres.catalog_file import ScannedTable
    from piigate.gateway.postgres.detect import label_column

    name = TableName(table.schema, table.name)
    note = None
    if table.problem is not None:
        unread = "labelled by column name only" if table.rows is None else "those by name only"
        note = f"values not read ({table.problem}): {unread}"
        typer.echo(f"piigate: warning: {name}: {note}", err=True)
    today = date.today()
    labels = [
        found
        for column in table.columns
        if (
            found := label_column(
                column.name, column.values, detectors=detectors, region=region, today=today
            )
        )
        is not None
    ]
    return ScannedTable(name, labels, len(table.columns), table.rows, note)


def _render(scanned: list[ScannedTable], *, where: str, sample: int) -> str:
    from piigate.gateway.postgres.catalog_file import render_catalog

    header = [
        f"PII catalog of {where}, by `piigate scan postgres` (up to {sample} rows per table).",
        "Review it: every entry is treated as PII, suspected or not. Remove the columns that are",
        "not PII, and drop `suspected` from those you confirm. No sampled value is quoted here.",
        "",
    ]
    return render_catalog(scanned, header=header)


def _write(out: str, text: str) -> None:
    """Write ``text`` to ``out`` whole or not at all (a partial catalog would under-protect)."""
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        fail(f"{out}: cannot write: {exc.strerror}")
