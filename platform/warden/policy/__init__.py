"""Policy: Casbin rules deciding allow / mask / deny per column, row filters, system rights."""

from warden.policy.engine import (
    ColumnDecision,
    Effect,
    Explanation,
    ModelMismatch,
    PolicySnapshot,
    ReadDecision,
    RowFilter,
    check_model,
    format_now,
)
from warden.policy.rules import Rule, RuleError
from warden.policy.service import PolicyService, PolicyUnavailable

__all__ = [
    "ColumnDecision",
    "Effect",
    "Explanation",
    "ModelMismatch",
    "PolicyService",
    "PolicySnapshot",
    "PolicyUnavailable",
    "ReadDecision",
    "RowFilter",
    "Rule",
    "RuleError",
    "check_model",
    "format_now",
]
