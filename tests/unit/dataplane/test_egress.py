"""Webhook egress rules (SSRF): URL syntax, address categories, resolve-once-and-pin."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from dataplane.egress import (
    EgressPolicy,
    IPAddress,
    RefusedTarget,
    check_url,
    refusal,
    resolve_target,
)
from exchange.errors import ConfigurationError

STRICT = EgressPolicy()
DEV = EgressPolicy(allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.health.gov.example/x",
        "https://hooks.health.gov.example:8443/x?a=1",
        "https://93.184.216.34/hook",
        "https://[2606:4700::1111]/hook",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    check_url(url, STRICT)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9/h", "loopback"),
        ("https://127.0.0.1/h", "loopback"),
        ("https://[::1]:8080/h", "loopback"),
        ("https://localhost/h", "loopback"),
        ("https://api.localhost/h", "loopback"),
        ("https://2130706433/h", "loopback"),  # 127.0.0.1 as one number
        ("https://0x7f.1/h", "loopback"),
        ("https://127.1/h", "loopback"),
        ("https://10.0.0.5/h", "private"),
        ("https://172.16.3.4/h", "private"),
        ("https://192.168.1.1/h", "private"),
        ("https://[fd12:3456::1]/h", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://169.254.10.10/h", "link-local"),
        ("https://[fe80::1]/h", "link-local"),
        ("https://224.0.0.1/h", "multicast"),
        ("https://[ff02::1]/h", "multicast"),
        ("https://0.0.0.0/h", "unspecified"),
        ("https://[::]/h", "unspecified"),
        ("https://240.0.0.1/h", "reserved"),
        ("https://100.64.0.1/h", "shared address space"),
        ("https://100.100.100.200/h", "metadata"),
        ("https://168.63.129.16/h", "metadata"),
        ("https://[::ffff:127.0.0.1]/h", "loopback"),
        ("https://[::ffff:169.254.169.254]/h", "metadata"),
        ("https://[::ffff:10.0.0.1]/h", "private"),
        ("https://[64:ff9b::a00:1]/h", "private"),  # NAT64 of 10.0.0.1
        ("https://[2002:a00:1::]/h", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(RefusedTarget) as exc:
        check_url(url, STRICT)
    assert why in exc.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@hooks.gov.example/x",
        "https://user@hooks.gov.example/x",
        "https://hooks.gov.example@169.254.169.254/x",
        "https://hooks.gov.example/x\r\nX-Injected: 1",
        "https://hooks.gov.example/a b",
        "https://hooks.gov.example/\x00",
        "https://hooks.gov.example/\t",
        "https://hooks.gov.\u0435xample/x",  # a Cyrillic "e": not ASCII
        "ftp://hooks.gov.example/x",
        "file:///etc/passwd",
        "gopher://hooks.gov.example/",
        "https:///x",
        "https://hooks.gov.example:0/x",
        "https://hooks.gov.example:65536/x",
        "https://hooks.gov.example:99999/x",
        "https://hooks.gov.example:-1/x",
        "https://under_score.example/x",
        "https://-dash.example/x",
        "https://[not-an-address]/x",
        "http://hooks.gov.example/x",  # plain http beyond loopback
        "not a url",
        "https://" + "a" * 2100 + ".example/",
    ],
)
def test_malformed_or_dangerous_urls_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget):
        check_url(url, DEV)


def test_loopback_needs_the_development_switch() -> None:
    for url in ("http://127.0.0.1:9/h", "http://localhost:8080/h", "http://[::1]:8080/h"):
        with pytest.raises(RefusedTarget):
            check_url(url, STRICT)
        check_url(url, DEV)
    with pytest.raises(RefusedTarget):  # the switch opens loopback, nothing else
        check_url("https://10.0.0.5/h", DEV)


def test_allowed_networks_open_exactly_those_networks() -> None:
    policy = EgressPolicy.from_settings(
        allow_loopback=False, allowed_networks=["10.20.0.0/16"], allowed_hosts=None
    )
    check_url("https://10.20.3.4/h", policy)
    check_url("https://[::ffff:10.20.3.4]/h", policy)
    for url in ("https://10.21.0.1/h", "https://127.0.0.1/h", "https://169.254.169.254/"):
        with pytest.raises(RefusedTarget):
            check_url(url, policy)


def test_metadata_can_only_be_reached_when_allow_listed() -> None:
    ip = ipaddress.ip_address("169.254.169.254")
    assert refusal(ip, STRICT) == "metadata"
    allowed = EgressPolicy(allowed_networks=(ipaddress.ip_network("169.254.169.254/32"),))
    assert refusal(ip, allowed) is None


def test_host_allow_list() -> None:
    policy = EgressPolicy.from_settings(
        allow_loopback=True, allowed_networks=None, allowed_hosts=[".gov.example"]
    )
    check_url("https://hooks.health.gov.example/x", policy)
    check_url("https://gov.example/x", policy)
    check_url("http://127.0.0.1:9/h", policy)  # loopback (development) is not a host name
    for url in (
        "https://evil.example/x",
        "https://gov.example.evil.example/x",
        "https://93.184.216.34/x",
    ):
        with pytest.raises(RefusedTarget):
            check_url(url, policy)


def test_bad_allowed_network_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        EgressPolicy.from_settings(
            allow_loopback=False, allowed_networks=["10.0.0.0/33"], allowed_hosts=None
        )


class FakeResolver:
    def __init__(self, answers: list[str]) -> None:
        self.answers = [ipaddress.ip_address(a) for a in answers]
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls += 1
        return list(self.answers)


def test_every_resolved_address_is_checked() -> None:
    target = check_url("https://hooks.gov.example/x", STRICT)
    for answers in (["10.0.0.5"], ["93.184.216.34", "10.0.0.5"], ["::1"], ["169.254.169.254"]):
        with pytest.raises(RefusedTarget):
            asyncio.run(resolve_target(target, STRICT, FakeResolver(answers)))


def test_the_checked_addresses_are_the_ones_returned_and_resolved_once() -> None:
    target = check_url("https://hooks.gov.example/x", STRICT)
    resolver = FakeResolver(["93.184.216.34", "93.184.216.35"])
    ips = asyncio.run(resolve_target(target, STRICT, resolver))
    assert [str(ip) for ip in ips] == ["93.184.216.34", "93.184.216.35"] and resolver.calls == 1
    assert target.host_header == "hooks.gov.example"
    assert check_url("https://h.gov.example:8443/", STRICT).host_header == "h.gov.example:8443"


def test_no_answer_is_an_error_not_a_pass() -> None:
    target = check_url("https://hooks.gov.example/x", STRICT)
    with pytest.raises(OSError):
        asyncio.run(resolve_target(target, STRICT, FakeResolver([])))
