"""`spec.url` is parsed once, and no character of it can change a routing rule.

Property tests over arbitrary strings (and over strings built from URL-ish pieces, so that many
of them parse): every url is either refused, or every routing builder's output has exactly the
expected shape with host and path made of safe characters, and nothing percent-decodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.gateway import ParentGateway, http_route, listener_set
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE, ServerPlan
from experiment_operator.trackingserver.routing import (
    ingress_route,
    middlewares,
    nginx_ingresses,
    nginx_regex,
    redirect_regex,
    traefik_match,
)
from experiment_operator.trackingserver.url import InvalidURLError, ServerURL

Sample = Callable[..., TrackingServer]

HOST = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
PREFIX = r"(/[A-Za-z0-9._~-]+)*"
TRAEFIK_RULE = re.compile(
    rf"Host\(`(?P<host>{HOST})`\)( && \(Path\(`(?P<p1>{PREFIX})`\) \|\| "
    rf"PathPrefix\(`(?P<p2>{PREFIX})/`\)\))?"
)
NGINX_REGEX = re.compile(r"(/([A-Za-z0-9_~-]|\\\.)+)+/\(\.\*\)")
REDIRECT = re.compile(r"\^\(https\?://\[\^/\]\+(?P<p>(/([A-Za-z0-9_~-]|\\\.)+)+)\)\(\\\?\.\*\)\?\$")

URL_PIECES = st.lists(
    st.sampled_from(
        ["http", "https", "HTTPS", ":", "//", "/", "h", "mlflow", ".", "example", "com", "-",
         "1", "8080", "99999", "%2F", "%2e", "%", "?", "#", "@", "user", "`", " ", "\n", "\\",
         "..", "~", "_", "a", "Team-A", "(", ")", "$", "{", "[", "]", "'", '"', "|", "*"]
    ),
    max_size=14,
).map("".join)  # fmt: skip
SEGMENT = st.text(alphabet="aZ09.-_~%2Fe/`?#@ ()$\\'\"{}|*^[]", min_size=1, max_size=8)
NEAR_VALID = st.builds(
    lambda scheme, labels, port, segments, slash: (
        f"{scheme}://{'.'.join(labels)}{port}{''.join('/' + s for s in segments)}{slash}"
    ),
    st.sampled_from(["http", "https"]),
    st.lists(
        st.from_regex(r"[a-zA-Z0-9][-a-zA-Z0-9]{0,5}", fullmatch=True), min_size=1, max_size=3
    ),
    st.sampled_from(["", ":8443", ":0", ":65536"]),
    st.lists(SEGMENT, max_size=3),
    st.sampled_from(["", "/"]),
)
"""URLs close to valid ones, so that many parse and the builders run on odd paths."""
URLS = st.one_of(
    st.text(max_size=80), URL_PIECES, URL_PIECES.map(lambda s: "https://" + s), NEAR_VALID
)


def parse_or_none(url: str) -> ServerURL | None:
    try:
        return ServerURL.parse(url)
    except InvalidURLError:
        return None


@given(URLS)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_url_changes_the_shape_of_a_routing_rule(url: str) -> None:
    parsed = parse_or_none(url)
    if parsed is None:
        return
    assert re.fullmatch(HOST, parsed.host)
    assert re.fullmatch(PREFIX, parsed.prefix)
    assert unquote(parsed.prefix) == parsed.prefix, "nothing may decode after admission"
    assert "/./" not in parsed.prefix + "/"
    assert "/../" not in parsed.prefix + "/"
    rule = TRAEFIK_RULE.fullmatch(traefik_match(parsed))
    assert rule is not None
    assert rule["host"] == parsed.host
    assert rule["p1"] == rule["p2"] == (parsed.prefix or None)
    if parsed.prefix:
        assert NGINX_REGEX.fullmatch(nginx_regex(parsed))
        regex, replacement = redirect_regex(parsed)
        match = REDIRECT.fullmatch(regex)
        assert match is not None
        assert match["p"].replace("\\.", ".") == parsed.prefix
        assert replacement == "${1}/${2}"
        # The escaped regex matches exactly the prefix as a literal.
        assert re.fullmatch(nginx_regex(parsed).removesuffix("/(.*)"), parsed.prefix)


@given(URLS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_builder_refuses_or_routes_safely(url: str) -> None:
    """Through the real builders: the routing objects of every mode carry only the parsed
    host and prefix (and the nginx annotations only the fixed rewrite and the redirect URL)."""
    parsed = parse_or_none(url)
    if parsed is None:
        return
    ts = TrackingServer.from_api(
        {
            "metadata": {"name": "ts", "namespace": "ns", "uid": "u"},
            "spec": {"size": 1, "artifact_root": "s3://b/", "backend_uri": "sqlite:///x.db",
                     "url": url, "image": "mlflow:aiscope"},
        }
    )  # fmt: skip
    for command in ("Operator", "Image"):
        ts.spec.server_command = command
        plan = ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE)
        route = ingress_route(ts, plan, group="traefik.io", tls=True)
        assert TRAEFIK_RULE.fullmatch(route["spec"]["routes"][0]["match"])
        for mw in middlewares(ts, plan, group="traefik.io"):
            spec = mw["spec"]
            assert spec.get("stripPrefix", {"prefixes": [parsed.prefix]}) == {
                "prefixes": [parsed.prefix]
            }
        for ingress in nginx_ingresses(ts, plan, ingress_class="nginx", tls=True):
            [rule] = ingress["spec"]["rules"]
            assert rule["host"] == parsed.host
            for path in rule["http"]["paths"]:
                p = path["path"]
                assert p in (parsed.prefix, "/", "/static-files", "/ajax-api") or (
                    NGINX_REGEX.fullmatch(p)
                )
            annotations = ingress["metadata"].get("annotations", {})
            assert set(annotations.values()) <= {
                "/$1",
                "true",
                "308",
                f"{parsed.tracking_uri}/",
            }
        parent = ParentGateway("gw", "infra")
        http = http_route(ts, plan, parent, listener_set=True)["spec"]
        assert http["hostnames"] == [parsed.host]
        for rule in http["rules"]:
            for match in rule["matches"]:
                assert match["path"]["value"] in (
                    parsed.prefix or "/",
                    "/static-files",
                    "/ajax-api",
                )
            for f in rule.get("filters", []):
                path = (f.get("requestRedirect") or f.get("urlRewrite"))["path"]
                assert path.get("replaceFullPath", f"{parsed.prefix}/") == f"{parsed.prefix}/"
                assert path.get("replacePrefixMatch", "/") == "/"
        [listener] = listener_set(ts, plan, parent, port=443)["spec"]["listeners"]
        assert listener["hostname"] == parsed.host


@pytest.mark.parametrize(
    ("url", "host", "port", "prefix"),
    [
        ("https://mlflow.platform.aiscope.io/platform", "mlflow.platform.aiscope.io", None,
         "/platform"),
        ("https://mlflow.example.com", "mlflow.example.com", None, ""),
        ("https://mlflow.example.com/", "mlflow.example.com", None, ""),
        ("https://mlflow.example.com:8443/a/b/", "mlflow.example.com", 8443, "/a/b"),
        ("http://MLflow.Example.com/Team_A~1.0", "mlflow.example.com", None, "/Team_A~1.0"),
    ],
)  # fmt: skip
def test_parse(url: str, host: str, port: int | None, prefix: str) -> None:
    parsed = ServerURL.parse(url)
    assert (parsed.host, parsed.port, parsed.prefix) == (host, port, prefix)


def test_origin_and_tracking_uri() -> None:
    parsed = ServerURL.parse("https://H.example:8443/team-a/")
    assert parsed.origin == "https://h.example:8443"
    assert parsed.tracking_uri == "https://h.example:8443/team-a"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:pw@h.example/p", "credentials"),
        ("https://user@h.example/p", "credentials"),
        ("https://h.example/a%20b", "no percent-encoding"),
        ("https://h.example/a%2F..", "no percent-encoding"),
        ("https://h.example/a?x=1", "query"),
        ("https://h.example/a#top", "fragment"),
        ("https://h.example/a`b", "between single slashes"),
        ("https://h.example//a", "between single slashes"),
        ("https://h.example/a/../b", "'..'"),
        ("https://h.example/./b", "'.'"),
        ("https://10.0.0.1/p", "not an IP address"),
        ("https://h.example:99999/p", "port at most 65535"),
        ("https://" + "a" * 250 + ".example/", "at most 253"),
        ("ftp://h.example/", "http(s)://HOST"),
        ("https://h_x.example/", "DNS host name"),
        ("https://-h.example/", "DNS host name"),
        ("HTTPS://h.example/", "http(s)://HOST"),
        ("https://h.example/p\n", "http(s)://HOST"),
    ],
)
def test_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidURLError) as raised:
        ServerURL.parse(url)
    assert message in str(raised.value)
    assert url not in str(raised.value)


def test_invalid_url_makes_no_children(sample: Sample) -> None:
    """A url stored under an older CRD never reaches a builder."""
    ts = sample("blog", url="https://h.example/a%20b")
    for controller in IngressController:
        with pytest.raises(InvalidURLError):
            ChildOptions(ingress_controller=controller).plan(ts)
