"""Read a topic's granted fields with the Python SDK (``exchange.client``).

    python examples/subscriber.py health.births [COUNT]

The caller's department needs an approved sharing agreement for the topic; the gateway
returns only the fields the agreement grants, decrypted. Pages are committed after they are
processed, so a restart continues where it stopped (at-least-once; de-duplicate on
``record_id``). Prints each record as a JSON line and stops after COUNT records.
"""

from __future__ import annotations

import json
import sys

from exchange.client import ExchangeClient


def main(topic: str, count: int) -> int:
    with ExchangeClient.from_profile() as client:
        sub = client.subscribe(topic, start="earliest")
        try:
            seen = 0
            for record in client.records(sub, wait_ms=2000):
                print(json.dumps({"record_id": record["record_id"], "value": record["value"]}))
                seen += 1
                if seen >= count:
                    break
        finally:
            client.call("DELETE", f"/v1/subscriptions/{sub}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3))
