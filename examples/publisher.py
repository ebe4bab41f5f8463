"""Publish a few records with the Python SDK (``exchange.client``).

    python examples/publisher.py health.births [FILE.jsonl]

Credentials: a profile saved by ``exchange login`` ($EXCHANGE_PROFILE or the default one), or
EXCHANGE_URL + EXCHANGE_CLIENT_ID + EXCHANGE_CLIENT_SECRET. The client fetches and refreshes
its OAuth token itself; the gateway validates each record against the topic's schema and
encrypts its sensitive and secret fields before they reach Kafka.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from exchange.client import ApiError, ExchangeClient


def main(topic: str, path: Path) -> int:
    values = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [{"key": v["birth_id"], "value": v} for v in values]
    with ExchangeClient.from_profile() as client:
        try:
            # A retry with the same Idempotency-Key returns the first answer: no duplicates.
            out = client.publish(topic, records, idempotency_key=f"example-{path.name}")
        except ApiError as exc:
            print(f"publish refused: {exc}", file=sys.stderr)
            for where, why in exc.field_errors:
                print(f"  {where}: {why}", file=sys.stderr)
            return 1
    print(f"published {len(out['offsets'])} record(s) with schema id {out['schema_id']}")
    return 0


if __name__ == "__main__":
    here = Path(__file__).parent
    sys.exit(main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else here / "births.jsonl"))
