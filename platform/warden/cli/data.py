"""`warden data …`: seed the taste graph; list what you may read; rotate and record mask keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from warden.cli.client import ApiClient, console, fail
from warden.cli.database import direct_session
from warden.cli.options import AuditReason
from warden.cli.output import Format, print_one, show
from warden.config import get_settings

app = typer.Typer(help="Seed and list governed datasets.", no_args_is_help=True)


@app.command()
def seed(
    scale: Annotated[
        str, typer.Option(help="small (~80k engagements), medium (≥1M), large (≥10M)")
    ] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files")] = 0,
    tenant: Annotated[str, typer.Option(help="Tenant that owns the datasets")] = "acme",
    owner: Annotated[str, typer.Option(help="Owner principal")] = "admin",
) -> None:
    """Generate the taste graph (generated graph, real digit images) and register its datasets.

    Runs against the database directly (an operator command, like `warden init`).
    """
    from warden.catalog.seeding import seed_taste_graph  # heavy imports only when seeding
    from warden.catalog.storage import storage_for

    if scale not in ("small", "medium", "large"):
        fail("--scale must be small, medium or large")
    settings = get_settings()
    with (
        console.status(f"generating the {scale} taste graph…") as status,
        direct_session() as db,
    ):
        rows = seed_taste_graph(
            db,
            datasets_dir=storage_for(settings),
            tenant_name=tenant,
            owner_name=owner,
            scale=scale,
            seed=seed,
            progress=lambda msg: status.update(msg),
        )
    show(
        rows,
        ["dataset", "rows", "classification", "version", "snapshot"],
        "table",
        title="registered datasets",
    )
    console.print(
        "note: the taste graph is generated; the pin images are real (scikit-learn digits)"
    )


@app.command()
def register(
    name: Annotated[str, typer.Argument(help="Dataset name (a new version if it exists)")],
    column: Annotated[
        list[str],
        typer.Option(help="NAME=CLASS[:ENTITY] per governed column (public, internal, pii)"),
    ],
    parquet: Annotated[Path | None, typer.Option(help="A Parquet file to register")] = None,
    iceberg: Annotated[
        str | None,
        typer.Option(
            help="An existing Iceberg table: NAMESPACE.TABLE in Warden's catalog, or its "
            "metadata file (…/metadata/….metadata.json, local or in the platform's bucket)"
        ),
    ] = None,
    identifier: Annotated[
        list[str] | None, typer.Option(help="An identifier column (masked by keyed hash)")
    ] = None,
    purpose: Annotated[list[str] | None, typer.Option(help="An allowed purpose")] = None,
    derived_from: Annotated[
        list[str] | None, typer.Option(help="A dataset (same tenant) it was built from")
    ] = None,
    description: Annotated[str, typer.Option(help="What it holds")] = "",
    tenant: Annotated[str, typer.Option(help="Tenant that owns the dataset")] = "acme",
    owner: Annotated[str, typer.Option(help="Owner principal")] = "admin",
) -> None:
    """Register a Parquet file or an existing Iceberg table (its current snapshot is copied
    into the platform's storage) as a governed dataset: a new snapshot of its Iceberg table.

    Runs against the database directly (an operator command, like `warden init`); audited as
    dataset.register."""
    import tempfile

    import polars as pl

    from warden.catalog.columns import ColumnInfo
    from warden.catalog.seeding import register_generated
    from warden.catalog.storage import storage_for
    from warden.catalog.tables import export_table
    from warden.tastegraph.specs import DatasetSpec

    if (parquet is None) == (iceberg is None):
        fail("give exactly one of --parquet FILE or --iceberg TABLE")
    declared: dict[str, tuple[str, str | None]] = {}
    for item in column:
        col, _, rest = item.partition("=")
        cls, _, entity = rest.partition(":")
        if not col or not cls:
            fail(f"--column {item!r} is not NAME=CLASS[:ENTITY]")
        declared[col] = (cls, entity or None)
    settings = get_settings()
    with (
        tempfile.TemporaryDirectory(prefix="warden-register-") as tmp,
        direct_session() as db,
    ):
        source = parquet
        if iceberg is not None:
            source = export_table(db, settings, iceberg, Path(tmp) / f"{name}.parquet")
        assert source is not None
        if not source.is_file():
            fail(f"no file {str(source)!r}")
        schema = pl.read_parquet_schema(source)
        spec = DatasetSpec(
            name=name,
            path=source,
            description=description,
            columns=tuple(
                ColumnInfo(c, str(schema[c]), cls, entity)
                if c in schema
                else ColumnInfo(c, "?", cls, entity)
                for c, (cls, entity) in declared.items()
            ),
            identifier_columns=tuple(identifier or ()),
            allowed_purposes=tuple(purpose or ()),
            row_count=0,
            derived_from=tuple(derived_from or ()),
        )
        details: dict[str, object] = {"source": "iceberg" if iceberg else "parquet"}
        rows = register_generated(db, [spec], storage_for(settings), tenant, owner, details)
    show(rows, ["dataset", "rows", "classification", "version", "snapshot"], "table")


@app.command("list")
def list_(fmt: Format = "table") -> None:
    """Datasets you may read in some way."""
    rows = ApiClient().get("/v1/datasets")["datasets"]
    show(rows, ["name", "classification", "rows", "allowed_purposes", "version"], fmt)


@app.command("show")
def show_(name: str, fmt: Format = "table") -> None:
    """One dataset's schema and column classes."""
    print_one(f"/v1/datasets/{name}", fmt, _dataset_details)


def _dataset_details(ds: dict[str, Any]) -> None:
    console.print(
        f"[bold]{ds['name']}[/] {ds['version']} · {ds['rows']} rows · owner {ds['owner']}"
    )
    show(ds["columns"], ["name", "dtype", "classification"], "table")


def _when(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--from {text!r} is not a time like 2026-12-01T00:00:00Z")
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@app.command("rotate-mask-key")
def rotate_mask_key(
    tenant: Annotated[str, typer.Option(help="Tenant whose pseudonyms change")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="When reads start using the new key (UTC; default: now)"),
    ] = None,
    actor: Annotated[str, typer.Option(help="Who rotates, for the audit log")] = "operator",
    reason: AuditReason = "",
) -> None:
    """Start a new mask key version for a tenant: every read from --from on pseudonymises
    identifiers with a key derived for that version, unrelated to the previous one.

    Runs against the database directly (an operator command, like `warden init`); only the
    version and its start time are stored, never a key.
    """
    from warden.audit.outcomes import by_operator
    from warden.audit.service import append
    from warden.gateway.keys import rotate
    from warden.identity.service import get_tenant

    when = _when(from_)
    conflict = "another rotation of this tenant's key committed first; look, then retry"
    with direct_session(conflict=conflict) as db:
        the_tenant = get_tenant(db, tenant)
        row = rotate(db, the_tenant.id, effective_from=when, actor=actor, reason=reason)
        details = {"key_version": row.version, "effective_from": row.effective_from.isoformat()}
        what = by_operator(
            actor, "mask_key.rotate", reason, tenant=the_tenant.name, details=details
        )
        append(db, what)
        version, start = row.version, row.effective_from
    console.print(f"tenant {tenant}: mask key version {version} from {start.isoformat()}")


@app.command("mask-keys")
def mask_keys(tenant: Annotated[str, typer.Option(help="Tenant")], fmt: Format = "table") -> None:
    """A tenant's mask key versions and when each took effect (version 1: from the start)."""
    from warden.gateway.keys import versions
    from warden.identity.service import get_tenant

    with direct_session() as db:
        the_tenant = get_tenant(db, tenant)
        rows = [{"version": 1, "effective_from": "-", "created_by": "-", "reason": ""}] + [
            {
                "version": v.version,
                "effective_from": _when(v.effective_from.isoformat()).isoformat(),
                "created_by": v.created_by,
                "reason": v.reason,
            }
            for v in versions(db, the_tenant.id)
        ]
    show(rows, ["version", "effective_from", "created_by", "reason"], fmt)


@app.command("record-mask-key")
def record_mask_key(
    replace: Annotated[
        bool,
        typer.Option(
            help="Make this key the deployment's although another is recorded: every"
            " pseudonym changes, and every host must then restart with this key"
        ),
    ] = False,
    actor: Annotated[str, typer.Option(help="Who records it, for the audit log")] = "operator",
    reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
) -> None:
    """Record this host's master mask key (its keyed fingerprint, never the key) as the one
    every host of the deployment must hold. For a deployment that masked reads before
    fingerprints were kept, or whose record was lost: run it where the key is the one those
    reads were masked with. Audited as `mask_key.record`; runs against the database directly.
    """
    from warden.gateway import master_key

    master = master_key.load_mask_key(get_settings())
    conflict = "another host recorded its mask key at the same moment; look, then retry"
    with direct_session(conflict=conflict) as db:
        check = master_key.inspect(db, master)
        own = master_key.short(check.own)
        if check.recorded is not None and not check.foreign:
            console.print(f"mask key {own} is already the deployment's")
            return
        if check.foreign and not replace:
            assert check.recorded is not None
            fail(
                f"the deployment's mask key is another one (fingerprint"
                f" {master_key.short(check.recorded)}, recorded by {check.recorded_by});"
                f" this host's is {own}. Start this host with the deployment's"
                " WARDEN_MASK_KEY, or pass --replace to make this key the deployment's"
                " (every pseudonym changes)."
            )
        how = "warden data record-mask-key" + (" --replace" if check.foreign else "")
        master_key.record(db, master, actor=actor, how=how, reason=reason)
    console.print(f"mask key {own} recorded as the deployment's")


def _sealed_models() -> tuple[Any, ...]:
    """The models whose rows carry a seal (warden.db.sealed), in the order they are shown."""
    from warden.db.models import sealed_models

    return sealed_models()


NEVER_SEALED = "not sealed (stored before seals existed, or its seal erased)"
EARLIER = "sealed with the fields an earlier Warden sealed (an upgrade; --all reseals it)"
WRITTEN = "does not match its seal (written past Warden; only --accept DIGEST seals it)"


def _key(row: Any) -> str:
    """A row's id (its first sealed field where it has no `id`: a dataset's terms override)."""
    return str(getattr(row, "id", None) or getattr(row, row.__sealed__[0]))


@app.command("seal")
def seal_rows(
    check: Annotated[bool, typer.Option("--check", help="Only show what does not match")] = False,
    accept: Annotated[
        list[str] | None,
        typer.Option(help="Seal the row shown with this digest by --check (repeatable)"),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Seal everything shown (once, right after upgrading)")
    ] = False,
    actor: Annotated[str, typer.Option(help="Who seals, for the audit log")] = "operator",
    reason: AuditReason = "",
) -> None:
    """Show, then seal, the rows that do not match their seal: datasets' terms and versions,
    tenants, principals, sandboxes, job tokens, jobs and models stored before seals existed,
    or written to the database past Warden. Nothing is decided on them until they are sealed
    (their reads, tokens, jobs and models are refused), and `serve` and `worker` refuse to
    start while a row is unsealed or sealed with another Warden's field set. Sealing blesses
    what is stored: look first (`--check` shows each row's fields and a digest), then seal
    what you checked with `--accept DIGEST` (a row changed since you looked has another
    digest, and nothing is sealed). `--all` reseals only what an upgrade left: rows that match
    the fields an earlier Warden sealed them with (`__sealed_before__`); a row written past
    Warden, or never sealed, is sealed by its digest alone. Audited as `rows.sealed`; runs
    against the database directly."""
    from warden.audit.keys import keys_for
    from warden.audit.outcomes import by_operator
    from warden.audit.service import append
    from warden.catalog.service import reseal, terms_shown, unsealed
    from warden.db import sealed

    if check and (accept or all_):
        fail("--check only shows; seal with --accept DIGEST or --all")
    with direct_session() as db:
        found: list[tuple[str, Any, str, dict[str, Any]]] = [
            ("dataset", d, NEVER_SEALED if d.seal is None else problem, terms_shown(db, d))
            for d, problem in unsealed(db)
        ]
        keys = keys_for(db.get_bind())
        upgraded: set[int] = set()  # rows `--all` may seal: what an upgrade left, verified
        for row in sealed.broken(db, _sealed_models()):
            table = type(row).__tablename__  # type: ignore[attr-defined]
            problem = NEVER_SEALED if row.seal is None else WRITTEN
            if sealed.sealed_earlier(keys, row):
                problem = EARLIER
                upgraded.add(id(row))
            found.append((table, row, problem, sealed.shown(row)))
        if all_ and (marked := sealed.remark(db, _sealed_models())):
            # rows sealed before seals carried their field set's mark, matching: marked now,
            # so the next upgrade that grows a table's fields stops start-up for them too
            console.print(f"marked {marked} matching seal(s) with their field set")
        if not found:
            console.print("every sealed row matches its seal")
            return
        digests = {}
        for table, row, problem, fields in found:
            digest = sealed.digest_of([table, fields])
            digests[digest] = (table, row)
            name = getattr(row, "name", "")
            # one unwrapped line each: a digest is copied from here into --accept
            lines = [f"- {table} {_key(row)} {name}: {problem}", f"    digest: {digest}"]
            lines += [f"    {f}: {json.dumps(v, default=str)}" for f, v in fields.items()]
            for line in lines:
                console.print(line, markup=False, soft_wrap=True)
        if check:
            raise typer.Exit(1)
        if not accept and not all_:
            fail("name what to seal: --accept DIGEST (shown above) for each row checked, or --all")
        if stale := [d for d in accept or () if d not in digests]:
            fail(f"not sealed: {stale} match nothing shown now (changed since you looked?)")
        chosen = [digests[d] for d in accept or ()]
        if all_:  # only what an upgrade left; anything else is someone's write, sealed by digest
            chosen += [(t, r) for t, r in digests.values() if id(r) in upgraded]
        chosen = list({id(r): (t, r) for t, r in chosen}.values())
        by_table: dict[str, list[str]] = {}
        for table, row in chosen:
            if table == "dataset":
                reseal(db, row, every_version=True)
            else:
                row.seal = sealed.seal_of(keys, row)
            by_table.setdefault(table, []).append(_key(row))
        details = {"rows": {t: ids[:100] for t, ids in by_table.items()}, "count": len(chosen)}
        append(db, by_operator(actor, "rows.sealed", reason, details=details))
    counts = ", ".join(f"{len(ids)} {table}" for table, ids in by_table.items())
    console.print(f"sealed {counts or 'nothing'}", markup=False)
    if all_ and (left := len(digests) - len(chosen)):
        fail(
            f"not sealed: {left} row(s) above match no field set a Warden sealed them with"
            " (written past Warden, or never sealed); look at each, then seal it with"
            " --accept DIGEST"
        )


@app.command("rekey-tokens")
def rekey_tokens(
    actor: Annotated[str, typer.Option(help="Who rekeys, for the audit log")] = "operator",
    reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
) -> None:
    """Key the token hashes a deployment stored before they were keyed, once, right after the
    upgrade: until then those tokens authenticate nothing and `serve` refuses to start.
    Audited as `tokens.rekeyed`; runs against the database directly."""
    from warden.identity.token_keys import rekey

    with direct_session() as db:
        count = rekey(db, actor=actor, reason=reason)
    console.print(f"keyed {count} token hash(es); the tokens they belong to work again")
