"""Derived data keeps its sources' class; identifier columns name their entity; a class never
goes down without a reviewed change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
from sqlalchemy import select

from tests.access.conftest import allow_browse
from tests.serving import register_as_admin
from warden.catalog.models import Dataset
from warden.catalog.service import ColumnInfo, load_view, register
from warden.db.session import unit_of_work
from warden.errors import Forbidden, Unprocessable
from warden.identity.service import get_or_create_tenant, get_principal, get_tenant


def _register(warden: Any, name: str, columns: list[ColumnInfo], **kw: Any) -> Dataset:
    """Register a small file in acme, owned by admin (what seeding and job outputs do)."""
    data_dir = Path(warden.state.settings.data_dir)
    source = data_dir / f"src-{name}.parquet"
    pl.DataFrame({c.name: [1, 2, 3] for c in columns}).write_parquet(source)
    with unit_of_work(warden.state.sessions) as db:
        tenant = get_tenant(db, kw.pop("tenant", "acme"))
        owner = get_principal(db, "admin")
        dataset, _ = register(
            db,
            datasets_dir=warden.state.settings.datasets_dir,
            tenant=tenant,
            owner=owner,
            name=name,
            source=source,
            columns=columns,
            identifier_columns=kw.pop("identifier_columns", []),
            allowed_purposes=kw.pop("allowed_purposes", ["training"]),
            **kw,
        )
        db.expunge(dataset)
        return dataset


def _view(warden: Any, name: str) -> Any:
    with warden.state.sessions() as db:
        return load_view(db, warden.state.settings.datasets_dir, "acme", name)


def test_seeded_pin_pairs_is_pii_because_it_derives_from_engagements(warden: Any) -> None:
    shown = warden.http.get("/v1/datasets/pin_pairs", headers=warden.as_("alice")).json()
    assert shown["classification"] == "pii"
    assert shown["derived_from"] == ["engagements"]
    assert {c["name"]: c["entity"] for c in shown["columns"]} == {
        "pin_a": "pin",
        "pin_b": "pin",
        "weight": None,
    }
    assert {c["classification"] for c in shown["columns"]} == {"public"}  # its own columns
    gold = warden.http.get("/v1/datasets/gold", headers=warden.as_("alice")).json()
    assert (gold["classification"], gold["derived_from"]) == ("pii", ["engagements"])
    eng = warden.http.get("/v1/datasets/engagements", headers=warden.as_("alice")).json()
    entities = {c["name"]: c["entity"] for c in eng["columns"]}
    assert entities["user_id"] == "user" and entities["pin_id"] == "pin"
    assert entities["board_id"] == "board" and entities["action"] is None


def test_a_pin_pairs_request_now_needs_the_pii_quorum(warden: Any) -> None:
    """Finding 7: pin_pairs was public, so any request for it was granted at once."""
    terms = warden.http.get("/v1/access/settings/pin_pairs", headers=warden.as_("admin")).json()
    assert (terms["classification"], terms["quorum"]) == ("pii", 2)
    assert terms["max_duration_s"] == 7 * 86400
    body = {"dataset": "pin_pairs", "purpose": "training", "duration": "7d", "justification": "x"}
    allow_browse(warden, "mallory")  # no role: she must at least know the dataset exists
    r = warden.http.post("/v1/access/requests", json=body, headers=warden.as_("mallory"))
    assert r.status_code == 201, r.text
    req = r.json()
    assert (req["classification"], req["quorum"], req["state"]) == ("pii", 2, "pending")
    assert req["grant_id"] is None
    assert warden.read("mallory", "pin_pairs", purpose="training").status_code in (403, 404)
    # ... and the longest it can be granted for is pii's
    body["duration"] = "30d"
    too_long = warden.http.post("/v1/access/requests", json=body, headers=warden.as_("mallory"))
    assert too_long.status_code == 422


@pytest.mark.parametrize(
    ("dataset", "change"),
    [
        ("pin_pairs", "drop the source"),
        ("engagements", "user_id public"),
        ("users", "every column public"),
        ("gold", "drop the source and user_id public"),
        ("gold", "user_id identifies a customer"),  # would dodge the mixed-exposure check
        ("engagements", "user_id identifies nothing"),
    ],
)
def test_lowering_a_class_is_refused_and_changes_nothing(
    warden: Any, taste_graph: list, dataset: str, change: str
) -> None:
    spec = next(s for s in taste_graph if s.name == dataset)
    columns = [ColumnInfo(c.name, c.dtype, c.classification, c.entity) for c in spec.columns]
    derived = list(spec.derived_from)
    if "drop the source" in change:
        derived = []
    if "user_id public" in change:
        columns = [
            ColumnInfo(c.name, c.dtype, "public", c.entity) if c.name == "user_id" else c
            for c in columns
        ]
    if "identifies" in change:
        entity = "customer" if "customer" in change else None
        columns = [
            ColumnInfo(c.name, c.dtype, c.classification, entity) if c.name == "user_id" else c
            for c in columns
        ]
    if "every column public" in change:
        columns = [ColumnInfo(c.name, c.dtype, "public", c.entity) for c in columns]
    before = _view(warden, dataset)
    with pytest.raises(Forbidden) as refused, unit_of_work(warden.state.sessions) as db:
        register(
            db,
            datasets_dir=warden.state.settings.datasets_dir,
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, "admin"),
            name=dataset,
            source=spec.path,
            columns=columns,
            identifier_columns=list(spec.identifier_columns),
            allowed_purposes=list(spec.allowed_purposes),
            derived_from=derived,
        )
    assert "needs a reviewed change" in refused.value.detail
    assert _view(warden, dataset) == before


def test_re_registering_at_the_same_class_is_fine_and_a_reviewed_change_may_lower(
    warden: Any, taste_graph: list
) -> None:
    from warden.catalog.seeding import register_generated

    with unit_of_work(warden.state.sessions) as db:
        register_generated(db, taste_graph, warden.state.settings.datasets_dir, "acme", "admin", {})
    assert _view(warden, "pin_pairs").classification == "pii"
    spec = next(s for s in taste_graph if s.name == "pin_pairs")
    register_as_admin(
        warden,
        "pin_pairs",
        spec.path,
        [ColumnInfo(c.name, c.dtype, c.classification, c.entity) for c in spec.columns],
        allowed_purposes=list(spec.allowed_purposes),
        reviewed_change="rc-approved-by-two",
    )
    assert _view(warden, "pin_pairs").classification == "public"


def test_a_stricter_source_raises_what_derives_from_it(warden: Any) -> None:
    _register(warden, "notes", [ColumnInfo("n", "Int64", "public")])
    _register(warden, "digest", [ColumnInfo("d", "Int64", "public")], derived_from=["notes"])
    _register(warden, "summary", [ColumnInfo("s", "Int64", "public")], derived_from=["digest"])
    assert _view(warden, "summary").classification == "public"
    _register(warden, "notes", [ColumnInfo("n", "Int64", "internal")])
    assert _view(warden, "digest").classification == "internal"
    assert _view(warden, "summary").classification == "internal"
    # a new dataset from two sources takes the strictest of them
    both = _register(
        warden, "both", [ColumnInfo("b", "Int64", "public")], derived_from=["digest", "users"]
    )
    assert both.classification == "pii"
    # and its own re-registration cannot lose a source silently
    with pytest.raises(Forbidden):
        _register(warden, "both", [ColumnInfo("b", "Int64", "pii")], derived_from=["digest"])


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"derived_from": ["nope"]}, "derived from unknown datasets"),
        ({"derived_from": ["selfish"]}, "cannot derive from itself"),
        ({"derived_from": ["theirs"]}, "derived from unknown datasets"),  # another tenant's
        ({"columns": [ColumnInfo("a", "Int64", "pii", "User Id")]}, "invalid entity"),
        ({"identifier_columns": ["zzz"]}, "are not columns of"),
        ({"columns": [ColumnInfo("a", "Int64", "pii")] * 2}, "declared more than once"),
        ({"columns": [ColumnInfo("a", "Int64", "secret")]}, "unknown class"),
    ],
)
def test_bad_lineage_or_entities_are_refused(warden: Any, kw: dict, message: str) -> None:
    kw = dict(kw)  # the parameters are shared by both backends' runs
    if kw.get("derived_from") == ["theirs"]:
        from warden.identity.service import create_principal

        with unit_of_work(warden.state.sessions) as db:
            create_principal(db, "gboss", "person", get_or_create_tenant(db, "globex"))
        source = Path(warden.state.settings.data_dir) / "theirs.parquet"
        pl.DataFrame({"a": [1]}).write_parquet(source)
        with unit_of_work(warden.state.sessions) as db:
            register(
                db,
                datasets_dir=warden.state.settings.datasets_dir,
                tenant=get_tenant(db, "globex"),
                owner=get_principal(db, "gboss"),
                name="theirs",
                source=source,
                columns=[ColumnInfo("a", "Int64", "pii")],
                identifier_columns=[],
                allowed_purposes=["training"],
            )
    columns = kw.pop("columns", [ColumnInfo("a", "Int64", "public")])
    with pytest.raises(Unprocessable) as refused:
        _register(warden, "selfish", columns, **kw)
    assert message in refused.value.detail
    with warden.state.sessions() as db:
        assert db.scalar(select(Dataset).where(Dataset.name == "selfish")) is None


def test_job_outputs_derive_from_their_inputs_and_mask_ids_with_entities_of_their_own(
    warden: Any,
) -> None:
    """What the job worker registers for an inference job's parquet outputs: its identifier
    columns identify entities of their own, so their pseudonyms join no other dataset's (the
    job chose their values: tests/jobs/test_output_pseudonyms_join_nothing_else.py)."""
    from warden.jobs.outputs import output_entity, register_outputs

    state = warden.state
    data_dir = Path(state.settings.data_dir)
    (data_dir / "jobs").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"user_id": [5, 6], "pin_id": [1, 2], "score": [0.5, 0.1]}).write_parquet(
        data_dir / "jobs" / "recs.parquet"
    )
    with unit_of_work(state.sessions) as db:
        alice = get_principal(db, "alice")
        job = SimpleNamespace(
            id="j1",
            tenant="acme",
            tenant_id=get_tenant(db, "acme").id,
            launcher="alice",
            launcher_id=alice.id,
            datasets=["pins", "engagements"],
        )
        out = register_outputs(
            state, db, job, [{"name": "recs.parquet", "path": "jobs/recs.parquet"}], {}
        )
    assert [o["classification"] for o in out] == ["pii"]
    view = _view(warden, out[0]["dataset"])
    assert view.derived_from == ("pins", "engagements")
    assert view.classification == "pii"
    name = out[0]["dataset"]
    assert {c.name: c.entity for c in view.columns} == {
        "user_id": output_entity(name, "user_id"),
        "pin_id": output_entity(name, "pin_id"),
        "score": None,
    }
    assert len({view.entity_of("user_id"), view.entity_of("pin_id"), "user", "pin"}) == 4


def test_registration_that_would_mix_exposure_is_refused(warden: Any, taste_graph: list) -> None:
    """The rules stay, the catalog moves: a user id column added where a role reads every
    column (pin_pairs, `*` for ml_engineer), or a new dataset matching a pattern rule, would
    put raw user ids beside the pseudonymised ones."""
    spec = next(s for s in taste_graph if s.name == "pin_pairs")
    data_dir = Path(warden.state.settings.data_dir)
    frame = pl.read_parquet(spec.path).with_columns(pl.col("pin_a").alias("user_id"))
    frame.write_parquet(data_dir / "pairs-with-users.parquet")
    before = _view(warden, "pin_pairs")
    columns = [ColumnInfo(c.name, c.dtype, c.classification, c.entity) for c in spec.columns]
    # the refusal propagates out of the unit of work, which rolls everything back
    with pytest.raises(Forbidden) as refused, unit_of_work(warden.state.sessions) as db:
        register(
            db,
            datasets_dir=warden.state.settings.datasets_dir,
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, "admin"),
            name="pin_pairs",
            source=data_dir / "pairs-with-users.parquet",
            columns=[*columns, ColumnInfo("user_id", "Int64", "pii", "user")],
            identifier_columns=["user_id"],
            allowed_purposes=list(spec.allowed_purposes),
            derived_from=["engagements"],
        )
    assert "mixed exposure" in refused.value.detail and "pin_pairs.user_id" in refused.value.detail
    assert _view(warden, "pin_pairs") == before

    r = warden.http.post(
        "/v1/policy/rules",
        json={"add": ["p, role:ml_engineer, acme, recs*, *, *, read, allow, ,"], "reason": "t"},
        headers=warden.as_("admin"),
    )
    assert r.status_code == 202, r.text  # widening: reviewed, approved by a second admin
    from tests.access.conftest import bootstrap_people

    bootstrap_people(warden, {"ada": ["admin"]})
    done = warden.http.post(
        f"/v1/policy/changes/{r.json()['change']['id']}/approve", json={}, headers=warden.as_("ada")
    )
    assert done.status_code == 200 and done.json()["state"] == "applied", done.text
    with pytest.raises(Forbidden):
        _register(
            warden,
            "recs_1",
            [ColumnInfo("user_id", "Int64", "pii", "user")],
            identifier_columns=["user_id"],
        )
    # the same file with no user entity declared mixes nothing: registered
    _register(warden, "recs_2", [ColumnInfo("score", "Int64", "internal")])


@pytest.mark.parametrize("dataset", ["pin_pairs", "users"])
def test_a_class_written_down_in_the_database_does_not_lower_it(warden: Any, dataset: str) -> None:
    """An insider with database write access sets the class to public: the columns (users)
    and the sources (pin_pairs) still say pii, and that is what the access terms use."""
    from sqlalchemy import update

    from warden.catalog.service import reseal

    with unit_of_work(warden.state.sessions) as db:
        db.execute(update(Dataset).where(Dataset.name == dataset).values(classification="public"))
    # The row no longer matches its seal (catalog/seal.py): nothing is decided on it.
    answer = warden.http.get(f"/v1/access/settings/{dataset}", headers=warden.as_("admin"))
    assert (answer.status_code, answer.json()["error"]) == (503, "CatalogTampered")
    body = {"dataset": dataset, "purpose": "training", "duration": "1d", "justification": "x"}
    allow_browse(warden, "mallory")
    answer = warden.http.post("/v1/access/requests", json=body, headers=warden.as_("mallory"))
    assert answer.status_code == 503
    # Sealed as it stands by an operator who did not look: the columns and sources still say
    # pii, and that is what the access terms use.
    with unit_of_work(warden.state.sessions) as db:
        reseal(db, db.scalars(select(Dataset).where(Dataset.name == dataset)).one())
    terms = warden.http.get(f"/v1/access/settings/{dataset}", headers=warden.as_("admin")).json()
    assert (terms["classification"], terms["quorum"]) == ("pii", 2)
    req = warden.http.post("/v1/access/requests", json=body, headers=warden.as_("mallory")).json()
    assert (req["quorum"], req["state"]) == (2, "pending")


# Red team 14, finding 8: a column taken out of the identifiers is unmasked for every grant
# made after (and no longer keeps versions out of its order): a lowering, as a class is.
@pytest.mark.parametrize("change", ["no identifiers", "user_id renamed", "user_id gains an entity"])
def test_taking_a_column_out_of_the_identifiers_without_a_reviewed_change_is_refused(
    warden: Any, taste_graph: list, change: str
) -> None:
    spec = next(s for s in taste_graph if s.name == "users")
    columns = [ColumnInfo(c.name, c.dtype, c.classification, c.entity) for c in spec.columns]
    identifiers, source = list(spec.identifier_columns), spec.path
    assert "user_id" in identifiers
    if change == "no identifiers":
        identifiers = []
    elif change == "user_id renamed":  # the same ids under another name, not an identifier
        source = Path(warden.state.settings.data_dir) / "renamed.parquet"
        pl.read_parquet(spec.path).rename({"user_id": "uid"}).write_parquet(source)
        columns = [
            dataclasses.replace(c, name="uid") if c.name == "user_id" else c for c in columns
        ]
        identifiers = [i for i in identifiers if i != "user_id"]
    before = _view(warden, "users")
    if change == "user_id gains an entity":  # an identifier of no entity joins entity `user`
        _register(warden, "tokens", [ColumnInfo("tok", "Int64", "pii")], identifier_columns=["tok"])
        with pytest.raises(Forbidden) as refused:
            _register(
                warden, "tokens", [ColumnInfo("tok", "Int64", "pii", "user")],
                identifier_columns=["tok"],
            )  # fmt: skip
        assert "identifies itself, not user" in refused.value.detail
        return
    with pytest.raises(Forbidden) as refused, unit_of_work(warden.state.sessions) as db:
        register(
            db,
            datasets_dir=warden.state.settings.datasets_dir,
            tenant=get_tenant(db, "acme"),
            owner=get_principal(db, before.owner),
            name="users",
            source=source,
            columns=columns,
            identifier_columns=identifiers,
            allowed_purposes=list(spec.allowed_purposes),
            derived_from=list(spec.derived_from),
        )
    assert "needs a reviewed change" in refused.value.detail
    assert "['user_id'] no longer identifier columns" in refused.value.detail
    assert _view(warden, "users") == before


def test_adding_an_identifier_needs_no_review_and_a_reviewed_change_may_drop_one(
    warden: Any,
) -> None:
    _register(
        warden, "tokens", [ColumnInfo("tok", "Int64", "pii"), ColumnInfo("n", "Int64", "pii")]
    )
    cols = [ColumnInfo("tok", "Int64", "pii"), ColumnInfo("n", "Int64", "pii")]
    _register(warden, "tokens", cols, identifier_columns=["tok", "n"])  # a tightening
    _register(warden, "tokens", cols, identifier_columns=["tok"], reviewed_change="rc-two-people")
    assert _view(warden, "tokens").identifier_columns == ("tok",)
