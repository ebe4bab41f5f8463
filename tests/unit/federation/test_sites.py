"""Site identity, known sites, shares and grants (files in the home, no broker)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from exchange.errors import Conflict, InvalidInput, NotFound
from exchange.federation.sites import Federation, decode_public_key
from exchange.federation.supervisor import flows
from exchange.kafka.mirror import ClusterEnd, Flow, mm2_properties, topics_regex
from exchange.kafka.security import KafkaSecurity


def pair(tmp_path: Path) -> tuple[Federation, Federation]:
    league, region = Federation(tmp_path / "league"), Federation(tmp_path / "region")
    lk, rk = league.init("league"), region.init("region")
    league.add_site("region", "http://region.example", rk)
    region.add_site("league", "http://league.example/", lk)
    return league, region


def test_identity_is_created_once_and_private(tmp_path: Path) -> None:
    fed = Federation(tmp_path)
    key = fed.init("league")
    assert fed.init("league") == key
    decode_public_key(key)
    with pytest.raises(Conflict):
        fed.init("region")
    mode = (fed.dir / "identity.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize("bad", ["ed25519:", "ed25519:AAAA", "rsa:xyz", "ed25519:***"])
def test_bad_public_keys_are_refused(tmp_path: Path, bad: str) -> None:
    fed = Federation(tmp_path)
    fed.init("league")
    with pytest.raises(InvalidInput):
        fed.add_site("region", "http://x", bad)


def test_share_grant_accept_round_trip(tmp_path: Path) -> None:
    league, region = pair(tmp_path)
    league.share("civil.residents", "region")
    with pytest.raises(Conflict):
        league.share("civil.residents", "region")
    grant = league.grant("region", "127.0.0.1:9092")
    assert grant["topics"] == ["civil.residents"] and grant["username"] == "mirror-region"
    assert league.grant("region", "x")["password"] == grant["password"]  # stable per site
    region.accept("civil.residents", grant)
    [sh] = region.incoming()
    assert (sh.topic, sh.site, sh.bootstrap) == ("civil.residents", "league", "127.0.0.1:9092")
    with pytest.raises(InvalidInput):  # not in the grant
        region.accept("civil.other", grant)
    with pytest.raises(InvalidInput):  # a grant for another site
        league.accept("civil.residents", grant)


def test_unknown_sites_are_refused(tmp_path: Path) -> None:
    league, _ = pair(tmp_path)
    with pytest.raises(NotFound):
        league.share("civil.residents", "county")
    with pytest.raises(NotFound):
        league.unshare("civil.residents", "region")


def test_mm2_properties_one_flow_identity_policy_and_escaped_allow_list(tmp_path: Path) -> None:
    league, region = pair(tmp_path)
    league.share("civil.residents", "region")
    region.accept("civil.residents", league.grant("region", "10.0.0.1:9092"))
    here = ClusterEnd(
        "region",
        "127.0.0.1:1",
        KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "exchange", SecretStr("pw")),
    )
    [flow] = flows(region, here)
    props = mm2_properties([flow])
    assert props["league->region.enabled"] == "true"
    assert props["region->league.enabled"] == "false"
    # the shared topic and the owner's state topic for us (catalog entries, agreements)
    state = r"_exchange\.federation\.league\.region"
    assert props["league->region.topics"] == state + r",civil\.residents"
    assert props["replication.policy.class"].endswith("IdentityReplicationPolicy")
    assert props["sync.group.offsets.enabled"] == "false"
    # the worker of the target cluster commits source offsets (what `status` reads) each second
    assert props["region.offset.flush.interval.ms"] == "1000"
    assert "offset.flush.interval.ms" not in props  # ignored there by a dedicated MM2 worker
    assert props["league.bootstrap.servers"] == "10.0.0.1:9092"
    assert 'username="mirror-region"' in props["league.sasl.jaas.config"]
    assert 'username="exchange"' in props["region.sasl.jaas.config"]


def test_topics_regex_never_matches_everything() -> None:
    assert topics_regex([]) != ".*"
    assert topics_regex(["a.b", "c"]) == r"a\.b,c"


def test_bad_alias_is_refused() -> None:
    end = ClusterEnd("Bad Name", "x:1", KafkaSecurity())
    with pytest.raises(Exception, match="alias"):
        mm2_properties([Flow(end, ClusterEnd("region", "y:1", KafkaSecurity()), ("t",))])
