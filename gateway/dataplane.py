"""Plugin wiring the data plane: topics and publishing, subscriptions and delivery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from exchange.delivery.hub import HubRegistry
from exchange.delivery.readers import ReaderPool
from exchange.delivery.store import SubscriptionStore
from gateway.container import Services
from gateway.routes import subscriptions, topics
from gateway.services.delivery import Deliverer
from gateway.services.fanout import GroupRegistry
from gateway.services.publisher import Publisher
from gateway.services.webhooks import WebhookDispatcher


def plugin(svc: Services) -> tuple[list[Any], Callable[[], None] | None]:
    svc.extras["publisher"] = Publisher(svc)
    svc.extras["subscriptions"] = SubscriptionStore(svc.sessions)
    svc.extras["deliverer"] = deliverer = Deliverer(svc)
    if (agreements := svc.extras.get("agreements")) is not None:
        # Approvals and revocations made through this instance bite at once; changes made
        # elsewhere within the grant cache's second.
        agreements.on_change(deliverer.forget)
    svc.extras["readers"] = readers = ReaderPool(svc.kafka)
    svc.extras["hubs"] = hubs = HubRegistry(svc.kafka)
    svc.extras["groups"] = GroupRegistry(hubs, deliverer)
    svc.extras["webhooks"] = webhooks = WebhookDispatcher(svc)
    svc.extras.setdefault("on_startup", []).append(_async(webhooks.start))
    svc.extras.setdefault("on_shutdown", []).append(webhooks.stop)

    def close() -> None:
        hubs.close()
        readers.close()

    return [topics.router, subscriptions.router], close


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fn()

    return run
