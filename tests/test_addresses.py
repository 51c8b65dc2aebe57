"""The camera address policy: strict parsing, resolution, and refusal of internal addresses."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp.test_utils import TestClient

from kitchencam.addresses import AddressError, AddressPolicy, parse_stream_url, refusal
from tests.conftest import FakeResolver
from tests.helpers import bearer, camera_body, register

HOSTILE = [
    "file:///etc/passwd",
    "http://camera.example.com/stream",
    "concat:rtsp://camera.example.com/a|file:///etc/passwd",
    "rtsp://127.0.0.1/",
    "rtsp://[::1]/",
    "rtsp://169.254.169.254/",
    "rtsp://10.0.0.5/",
    "rtsp://2130706433/",
    "rtsp://0x7f.1/",
    "rtsp://[::ffff:127.0.0.1]/",
    "rtsp://0177.0.0.1/",
    "rtsp://100.64.0.1/",
    "rtsp://224.0.0.1/",
    "rtsp://0.0.0.0/",
    "rtsp://[fe80::1]/",
    "rtsp://[64:ff9b::a00:5]/",
    "rtsp://internal.example.com/",  # resolves to a private address (fake resolver)
    "rtsp://split.example.com/",  # one public and one private address
    "rtsp://admin:admin@camera.example.com/",  # credentials belong in their own fields
    "rtsp://admin@camera.example.com/",
    "rtsp://nowhere.example.com/",  # does not resolve
    "rtsp:///no-host",
    "rtsp://camera.example.com/has space",
]


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver(
        {
            "camera.example.com": ["93.184.216.34"],
            "internal.example.com": ["10.1.2.3"],
            "split.example.com": ["93.184.216.34", "192.168.1.20"],
        }
    )


@pytest.mark.parametrize("url", HOSTILE)
async def test_hostile_camera_addresses_are_refused(client: TestClient, url: str) -> None:
    rid, token = await register(client)
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras", json=camera_body(url=url), headers=bearer(token)
    )
    body = await resp.json()
    assert resp.status == 422, body
    assert any(f["field"] == "url" for f in body["error"].get("fields", [])), body
    listed = await (
        await client.get(f"/api/v1/restaurants/{rid}/cameras", headers=bearer(token))
    ).json()
    assert listed["cameras"] == []


async def test_substream_and_updates_are_checked_too(client: TestClient) -> None:
    rid, token = await register(client)
    resp = await client.post(
        f"/api/v1/restaurants/{rid}/cameras",
        json=camera_body(substream_url="rtsp://169.254.169.254/"),
        headers=bearer(token),
    )
    assert resp.status == 422
    ok = await client.post(
        f"/api/v1/restaurants/{rid}/cameras", json=camera_body(), headers=bearer(token)
    )
    cid = (await ok.json())["id"]
    resp = await client.patch(
        f"/api/v1/cameras/{cid}", json={"url": "rtsp://10.0.0.5/"}, headers=bearer(token)
    )
    assert resp.status == 422


async def test_allow_list_admits_an_on_premises_network(resolver: FakeResolver) -> None:
    allow = (ipaddress.ip_network("10.1.0.0/16"),)
    policy = AddressPolicy(allow, resolver)
    ip = await policy.check(parse_stream_url("rtsp://internal.example.com/ch1"))
    assert str(ip) == "10.1.2.3"
    with pytest.raises(AddressError, match="private"):
        await AddressPolicy((), resolver).check(parse_stream_url("rtsp://internal.example.com/"))
    # The allow-list never admits unspecified or multicast addresses.
    assert refusal(ipaddress.ip_address("0.0.0.0"), (ipaddress.ip_network("0.0.0.0/0"),))


def test_connect_url_uses_the_checked_ip_and_encodes_credentials() -> None:
    address = parse_stream_url("rtsp://camera.example.com:8554/live?ch=1")
    url = address.url_for(ipaddress.ip_address("93.184.216.34"), "ad:min", "p@ss:w/rd")
    assert url == "rtsp://ad%3Amin:p%40ss%3Aw%2Frd@93.184.216.34:8554/live?ch=1"
    v6 = address.url_for(ipaddress.ip_address("2001:db8::7"), None, None)
    assert v6 == "rtsp://[2001:db8::7]:8554/live?ch=1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("RTSP://Camera.Example.COM/a", "rtsp://camera.example.com:554/a"),
        ("rtsps://camera.example.com", "rtsps://camera.example.com:322/"),
        ("rtsp://[2001:db8::1]:10554/x", "rtsp://[2001:db8::1]:10554/x"),
    ],
)
def test_addresses_are_normalised(url: str, expected: str) -> None:
    assert parse_stream_url(url).url == expected
