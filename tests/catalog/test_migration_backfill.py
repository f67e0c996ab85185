"""A deployment seeded before per-entity columns and lineage: upgrading gives its seeded
datasets their entities and lineage, and pin_pairs its sources' class (finding 7)."""

from __future__ import annotations

import json

from sqlalchemy import text

from warden.db.migrate import downgrade, upgrade
from warden.db.session import make_engine

ROWS = {
    # name: (class, columns)
    "engagements": ("pii", ["engagement_id", "user_id", "pin_id", "board_id", "action"]),
    "pin_pairs": ("public", ["pin_a", "pin_b", "weight"]),
    "gold": ("pii", ["slice", "user_id", "query_pin_id", "target_pin_id"]),
}


def test_upgrade_backfills_the_seeded_catalog(db_url: str) -> None:
    downgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenant (id, name, created_at)"
                    " VALUES ('t1', 'acme', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO principal (id, name, kind, tenant_id, disabled, created_at)"
                    " VALUES ('p1', 'admin', 'person', 't1', false, CURRENT_TIMESTAMP)"
                )
            )
            for i, (name, (cls, columns)) in enumerate(ROWS.items()):
                conn.execute(
                    text(
                        "INSERT INTO dataset (id, name, tenant_id, owner_id, description,"
                        " classification, allowed_purposes, identifier_columns,"
                        " current_version, created_at) VALUES (:id, :name, 't1', 'p1', '',"
                        " :cls, '[]', '[]', 'sha256:x', CURRENT_TIMESTAMP)"
                    ),
                    {"id": f"d{i}", "name": name, "cls": cls},
                )
                for j, column in enumerate(columns):
                    conn.execute(
                        text(
                            "INSERT INTO dataset_column (id, dataset_id, name, dtype,"
                            " classification, position) VALUES (:id, :ds, :name, 'Int64',"
                            " 'public', :pos)"
                        ),
                        {"id": f"c{i}_{j}", "ds": f"d{i}", "name": column, "pos": j},
                    )
    finally:
        engine.dispose()
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            datasets = {
                name: (cls, derived if isinstance(derived, list) else json.loads(derived))
                for name, cls, derived in conn.execute(
                    text("SELECT name, classification, derived_from FROM dataset")
                )
            }
            entities = dict(
                conn.execute(
                    text(
                        "SELECT d.name || '.' || c.name, c.entity FROM dataset_column c"
                        " JOIN dataset d ON d.id = c.dataset_id"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    assert datasets == {
        "engagements": ("pii", []),
        "pin_pairs": ("pii", ["engagements"]),
        "gold": ("pii", ["engagements"]),
    }
    assert entities["engagements.user_id"] == entities["gold.user_id"] == "user"
    assert entities["pin_pairs.pin_a"] == entities["gold.query_pin_id"] == "pin"
    assert entities["engagements.engagement_id"] == "engagement"
    assert entities["engagements.action"] is None and entities["pin_pairs.weight"] is None
