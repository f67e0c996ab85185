"""`warden policy …`: explain decisions, lint rule files, change rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from warden.cli.client import ApiClient, console, err_console, fail, given
from warden.cli.database import direct_session
from warden.cli.options import AuditReason, Columns, DatasetName, Purpose, column_names
from warden.cli.output import Format, print_body, print_one, show
from warden.config import get_settings

if TYPE_CHECKING:
    from warden.policy.exposure import IdColumn

app = typer.Typer(help="Explain, lint and change Casbin policy.", no_args_is_help=True)
BreakGlass = Annotated[
    bool,
    typer.Option(
        "--break-glass",
        help="Apply a widening change now (needs --reason); flagged until someone signs it off",
    ),
]


@app.command()
def check(
    subject: Annotated[str, typer.Argument(help="Principal name, e.g. alice")],
    dataset: DatasetName,
    purpose: Purpose,
    columns: Columns = None,
    fmt: Format = "table",
) -> None:
    """Explain a read decision column by column, naming the rule that decided each."""
    body = {
        "subject": subject,
        "dataset": dataset,
        "purpose": purpose,
        "columns": column_names(columns),
    }
    result = ApiClient().post("/v1/policy/check", json=body)
    print_body(result, fmt, lambda r: _explain(r, subject, purpose))


def _explain(result: dict[str, Any], subject: str, purpose: str) -> None:
    console.print(
        f"[bold]{subject}[/] on [bold]{result['dataset']}[/] for [bold]{purpose}[/] · policy "
        f"v{result['policy_version']} · roles: {', '.join(result['roles']) or 'none'}"
    )
    if not result["purpose_allowed_by_dataset"]:
        console.print(f"[red]the dataset does not allow the purpose {purpose!r}[/]")
    show(result["columns"], ["column", "effect", "rule", "grant_id"], "table")
    if result["row_filters"]:
        show(result["row_filters"], ["column", "op", "value", "rule"], "table", title="row filters")


@app.command()
def lint(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Rule CSV files (default: policies/*.csv)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: policies/model.conf)")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Check identifiers against the datasets registered in the database "
            "(default: the seeded taste graph's)",
        ),
    ] = False,
) -> None:
    """Check the model and rule files: each problem with file, line and reason. Applies nothing.

    Also refuses rules under which a subject could see one entity's identifiers raw in one
    place and masked in another (unless an `entity:NAME ... expose_mixed` exception says so).
    """
    from warden.policy.lint import lint as lint_files  # the policy engine: only when linting

    settings = get_settings()
    policies = settings.policies_dir
    paths = files or sorted(policies.glob("*.csv"))
    catalog = _live_catalog() if live else None
    problems = lint_files(model or policies / "model.conf", paths, catalog)
    if not problems:
        console.print(f"ok: {len(paths)} rule file(s) and the model are valid")
        return
    for problem in problems:
        err_console.print(f"{problem.file}:{problem.line}: {problem.reason}")
    fail(f"{len(problems)} problem(s); nothing applied")


def _live_catalog() -> dict[str, list[IdColumn]]:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from warden.identity.models import Tenant
    from warden.policy.exposure import catalog_from_db

    try:
        with direct_session(keys=False) as db:  # reads the catalog's names, checks no seal
            return catalog_from_db(db, db.scalars(select(Tenant.name)).all())
    except SQLAlchemyError as exc:
        fail(f"cannot read the catalog: {exc.__class__.__name__}")


@app.command()
def rules(fmt: Format = "table") -> None:
    """List your tenant's rules in policy order."""
    result = ApiClient().get("/v1/policy/rules")
    show(
        [{"rule": r} for r in result["rules"]], ["rule"], fmt, title=f"policy v{result['version']}"
    )


@app.command()
def seal(
    accept: Annotated[
        str | None,
        typer.Option(help="Seal the stored rules as shown, named by the digest shown with them"),
    ] = None,
    remove_added: Annotated[
        bool,
        typer.Option(help="Delete the rule row shown as added past Warden (nothing new sealed)"),
    ] = False,
    restore_logged: Annotated[
        bool,
        typer.Option(
            help="Put the rules back as the audit log's rule changes record them (nothing sealed)"
        ),
    ] = False,
    actor: Annotated[str, typer.Option(help="Who seals it, for the audit log")] = "operator",
    reason: AuditReason = "",
) -> None:
    """Repair a broken policy seal. Every rule change seals the rule set with the audit chain
    key; rules written to the database past Warden (or stored before seals existed) break
    the seal and every decision denies until an operator repairs it. Run without options it
    shows what the seal can tell: the row added past Warden when it can name one (remove it
    with --remove-added: the sealed rules are back, nothing new is in force), and otherwise
    every stored rule with their digest; --accept DIGEST then seals them exactly as shown (a
    rule written after you looked changes the digest, and nothing is sealed). Rules that
    contradict the rule changes the audit log records (a rule applied and since deleted, one
    removed and stored again) are shown too, and nothing is sealed while they stand:
    --restore-logged puts them back as the log says. Audited as `policy.sealed` or
    `policy.restored`; runs against the database directly."""
    from warden.audit.outcomes import by_operator
    from warden.audit.service import append
    from warden.policy import store, unsealed

    if sum(map(bool, (accept, remove_added, restore_logged))) > 1:
        fail("one of --accept DIGEST, --remove-added or --restore-logged at a time")
    with direct_session() as db:
        found = unsealed.examine(db)
        if found is None:
            if restore_logged:
                fail("the stored rules contradict no rule change the audit log records")
            version, _ = store.load_rules(db)
            console.print(f"the stored rules match their seal (policy v{version})")
            return
        if restore_logged:
            _restore_logged(db, found, actor, reason)
            return
        if remove_added:
            if not found.added:
                fail(
                    "the seal names no single row added past Warden (rows removed or edited,"
                    " several added, or the state rewritten): look at the rules it shows and"
                    " seal them with --accept DIGEST"
                )
            store.delete_rule_rows(db, [row_id for row_id, _ in found.added])
            if not unsealed.restores(db, found):  # written meanwhile: nothing is deleted
                fail("nothing removed: the stored rules changed meanwhile; look again")
            # the rules Warden sealed, under a new version (its own may have been moved)
            version = store.reseal(db).version
            removed = [found.shown(row) for row in found.added]
            details = {"version": version, "removed": removed, "was": found.broken[:300]}
            append(db, by_operator(actor, "policy.restored", reason, details=details))
            console.print(f"removed {'; '.join(removed)}: the rules sealed as policy v{version}")
            return
        if accept is None:
            _show(found)
            fail("nothing sealed: --remove-added or --accept DIGEST (see above)")
        if found.contradicted:
            _show(found)
            fail("nothing sealed: the stored rules contradict the audit log (above); put them"
                 " back with --restore-logged, then look again")  # fmt: skip
        if accept != found.digest:
            fail(f"nothing sealed: the stored rules' digest is {found.digest} now (changed since?)")
        after = store.reseal(db)
        if unsealed.digest_now(db) != accept:  # written meanwhile: roll back
            fail("nothing sealed: the stored rules changed while sealing; look again")
        details = {
            "version": after.version,
            "rules": len(found.rows),
            "digest": accept,
            "added": [found.shown(row) for row in found.added],
            "was": found.broken[:300],
        }
        append(db, by_operator(actor, "policy.sealed", reason, details=details))
    sealed = f"sealed {len(found.rows)} rule(s) as policy v{after.version}"
    console.print(f"{sealed} (was: {found.broken})", markup=False)


def _restore_logged(db: Any, found: Any, actor: str, reason: str) -> None:
    """Store again what the log's rule changes applied, delete what they removed; the seal
    stays broken until the operator looks again and seals (policy.restored, audited)."""
    from warden.audit.outcomes import by_operator
    from warden.audit.service import append
    from warden.policy import store
    from warden.policy.logged_rules import as_rule

    if not found.contradicted:
        fail("the stored rules contradict no rule change the audit log records (see above)")
    missing = [as_rule(c) for c in found.contradicted if not c.stored]
    extra = {as_rule(c) for c in found.contradicted if c.stored}
    store.insert_rule_rows(db, missing)
    store.delete_rule_rows(db, [row_id for row_id, rule in found.rows if rule in extra])
    put = [str(c) for c in found.contradicted]
    details = {"restored_from_log": put[:200], "was": found.broken[:300]}
    append(db, by_operator(actor, "policy.restored", reason, details=details))
    for line in put:
        console.print(f"put back as the log records: {line}", markup=False, soft_wrap=True)
    console.print("nothing sealed yet: run `warden policy seal` again and look", markup=False)


def _show(found: Any) -> None:
    """What a broken seal can tell, one unwrapped line each (a digest is copied from here)."""
    console.print(found.broken, markup=False, soft_wrap=True)
    if found.contradicted:
        console.print(
            f"the audit log contradicts {len(found.contradicted)} stored or missing rule(s):",
            markup=False,
        )
        for line in found.contradicted:
            console.print(f"  {line}", markup=False, soft_wrap=True)
    for row in found.added:
        console.print(f"added past Warden: {found.shown(row)}", markup=False, soft_wrap=True)
    if not found.added:
        console.print(f"stored rules ({len(found.rows)}):", markup=False)
        for row in found.rows:
            console.print(f"  {found.shown(row)}", markup=False, soft_wrap=True)
    console.print(f"digest: {found.digest}", markup=False, soft_wrap=True)


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(help="CSV of rules to add (linted first)")],
    reason: AuditReason = "",
    break_glass: BreakGlass = False,
) -> None:
    """Add the rules of a CSV file (all or nothing; audited). Rules that widen access are
    proposed for review; they apply once a different person approves them."""
    from warden.policy.lint import lint as lint_files  # the policy engine: only when linting

    policies = get_settings().policies_dir
    context = [p for p in sorted(policies.glob("*.csv")) if p.resolve() != file.resolve()]
    # Lint with the seed rules as context (roles are defined there), report this file only.
    problems = [
        p for p in lint_files(policies / "model.conf", [*context, file]) if p.file == str(file)
    ]
    if problems:
        for problem in problems:
            err_console.print(f"{problem.file}:{problem.line}: {problem.reason}")
        fail("nothing applied")
    lines = [
        line.strip()
        for line in file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    _submit({"add": lines, "reason": reason, "break_glass": break_glass}, "table")


@app.command()
def propose(
    add: Annotated[list[str] | None, typer.Option("--add", help="A rule line to add")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="A rule line to remove")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why, for the reviewers and the audit log")] = "",
    break_glass: BreakGlass = False,
    fmt: Format = "table",
) -> None:
    """Propose a rules change. Narrowing ones (a deny, a row filter, removing an allow) apply
    at once; anything that could widen access waits for another person's approval."""
    body = {"add": add or [], "remove": remove or [], "reason": reason, "break_glass": break_glass}
    _submit(body, fmt)


def _submit(body: dict[str, Any], fmt: str) -> None:
    out = ApiClient().post("/v1/policy/rules", json=body)
    if out["state"] == "pending":  # the change awaiting review is the answer
        print_body(out["change"], fmt, _proposed)
    else:
        print_body(out, fmt, _applied)


def _proposed(change: dict[str, Any]) -> None:
    console.print(
        f"proposed, awaiting review: change [bold]{change['id']}[/] ({change['summary']});"
        f" it needs {change['quorum']} approval(s) by someone else"
    )
    for why in change["widening"][:20]:
        console.print(f"  widens: {why}")


def _applied(out: dict[str, Any]) -> None:
    change = out.get("change")
    flag = ""
    if change is not None and change["break_glass"]:
        flag = f" as break-glass change {change['id']}: flagged, needs review by someone else"
    console.print(
        f"policy v{out['version']}: {out['added']} rule(s) added, {out['removed']} removed{flag}"
    )


changes_app = typer.Typer(
    help="Reviewed changes: list, show, approve, deny, cancel, sign off.", no_args_is_help=True
)
app.add_typer(changes_app, name="changes")
CHANGE_COLUMNS = ["id", "kind", "summary", "proposer", "state", "approvals", "flags"]
Comment = Annotated[str, typer.Option(help="A note for the proposer and the audit log")]


def _row(c: dict[str, Any]) -> dict[str, Any]:
    flags = [f for f, on in (("break-glass", c["break_glass"]), ("needs review",
             c["needs_review"])) if on]  # fmt: skip
    return {**c, "approvals": f"{len(c['approvals'])}/{c['quorum']}", "flags": flags}


@changes_app.command("list")
def list_changes(
    state: Annotated[
        list[str] | None, typer.Option(help="pending, applied, denied, cancelled, expired")
    ] = None,
    mine: Annotated[bool, typer.Option(help="Only changes you proposed")] = False,
    needs_review: Annotated[
        bool, typer.Option("--needs-review", help="Only break-glass changes not signed off")
    ] = False,
    fmt: Format = "table",
) -> None:
    """Changes you proposed, or every change of your tenant if you review policy."""
    params = given(mine=mine, state=state, needs_review=needs_review or None)
    rows = ApiClient().get("/v1/policy/changes", params=params)["changes"]
    show([_row(c) for c in rows], CHANGE_COLUMNS, fmt, title="policy changes")


@changes_app.command("show")
def show_change(change_id: str, fmt: Format = "table") -> None:
    """One change: what it does, why it widens, whom it benefits, reviews and history."""
    print_one(f"/v1/policy/changes/{change_id}", fmt, _change_details)


def _change_details(c: dict[str, Any]) -> None:
    show([_row(c)], CHANGE_COLUMNS, "table")
    for key in ("add", "remove"):
        for line in c["payload"].get(key, []):
            console.print(f"  {key}: {line}")
    for why in c["widening"]:
        console.print(f"  widens: {why}")
    console.print(f"  benefits: {', '.join(c['beneficiaries']) or 'nobody named'}")
    if c["history"]:
        show(c["history"], ["at", "event", "from_state", "to_state", "actor", "reason"], "table")


def _act(change_id: str, verb: str, comment: str, fmt: str) -> None:
    c = ApiClient().post(f"/v1/policy/changes/{change_id}/{verb}", json={"comment": comment})
    print_body(c, fmt, _change_state)


def _change_state(c: dict[str, Any]) -> None:
    version = f" (policy v{c['policy_version']})" if c["policy_version"] else ""
    console.print(f"change {c['id']}: {c['state']}{version}")


@changes_app.command()
def approve(change_id: str, comment: Comment = "", fmt: Format = "table") -> None:
    """Approve a change someone else proposed; the quorum's last approval applies it."""
    _act(change_id, "approve", comment, fmt)


@changes_app.command()
def deny(change_id: str, comment: Comment = "", fmt: Format = "table") -> None:
    """Deny a pending change: one deny rejects it."""
    _act(change_id, "deny", comment, fmt)


@changes_app.command()
def cancel(change_id: str, comment: Comment = "", fmt: Format = "table") -> None:
    """Withdraw a change you proposed."""
    _act(change_id, "cancel", comment, fmt)


@changes_app.command("sign-off")
def sign_off(change_id: str, comment: Comment = "", fmt: Format = "table") -> None:
    """Sign off a break-glass change someone else applied."""
    _act(change_id, "sign-off", comment, fmt)
