"""Audit use cases: read an account's trail and verify the hash chains."""

from __future__ import annotations

from alluse.application.ports import AccountStore
from alluse.domain.audit import AuditRecord, ChainReport, verify_chain
from alluse.domain.config_versions import GLOBAL_SCOPE


class AuditService:
    def __init__(self, store: AccountStore) -> None:
        self._store = store

    def trail(self, scope: str) -> list[AuditRecord]:
        if scope != GLOBAL_SCOPE:
            self._store.get(scope)
        return self._store.audit_records(scope)

    def verify(self, scope: str) -> ChainReport:
        head = self._store.global_state().audit_head if scope == GLOBAL_SCOPE else self._store.get(scope).audit_head
        return verify_chain(scope, self._store.audit_records(scope), head)

    def verify_all(self) -> list[ChainReport]:
        reports = [self.verify(GLOBAL_SCOPE)]
        reports += [
            verify_chain(a.account_id, self._store.audit_records(a.account_id), a.audit_head)
            for a in self._store.list_accounts()
        ]
        return reports
