from django.test import RequestFactory

from common.http import client_address


def request(remote: str = "", forwarded: str = ""):
    meta = {"REMOTE_ADDR": remote} | ({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})
    return RequestFactory().get("/", **meta)


def test_the_peer_address_in_normal_form(settings):
    settings.AUDIT_TRUST_X_FORWARDED_FOR = False
    assert client_address(request("10.0.0.7", forwarded="203.0.113.9")) == "10.0.0.7"
    assert client_address(request("2001:DB8:0:0::1")) == "2001:db8::1"
    assert client_address(request("")) is None
    assert client_address(None) is None


def test_the_last_forwarded_hop_only_behind_a_trusted_proxy(settings):
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    assert client_address(request("10.0.0.7", forwarded="198.51.100.1, 203.0.113.9")) == "203.0.113.9"
    assert client_address(request("10.0.0.7", forwarded="not-an-address")) is None
    assert client_address(request("10.0.0.7")) == "10.0.0.7"
