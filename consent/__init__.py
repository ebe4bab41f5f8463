"""Catalog, sharing agreements, data-subject consent and the policy decision.

Services (built by the composition root, ``gateway.bootstrap``):

- ``svc.catalog``: :class:`consent.catalog.Catalog` — ``create/get/search/delete`` of
  :class:`~consent.domain.CatalogEntry` (one per topic).
- ``svc.agreements``: :class:`consent.agreements.Agreements` — ``request``, ``approve``
  (narrowing), ``reject``, ``suspend``, ``resume``, ``revoke``, ``get``, ``list`` and the hot
  ``current_grant(consumer, topic, now) -> Grant | None``; ``on_change(listener)`` to hear
  about changes made in this process.
- ``svc.consents``: :class:`consent.consents.Consents` — ``record``, ``pause``, ``resume``,
  ``revoke`` (each a new signed version), ``get``, ``versions``, ``find`` and
  ``active_consents(consumer, topic, subjects, now) -> {subject: ConsentRef}``.

:func:`consent.policy.decide` is the pure decision every delivery goes through.
"""
