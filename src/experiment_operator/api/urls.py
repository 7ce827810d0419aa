"""What a TrackingServer's `url` may look like: one set of patterns for the CRD's CEL rules (at
admission) and for the operator's parser (`trackingserver.url`), so both accept the same URLs.

Every character that can reach a routing rule is restricted, not escaped: the host is a DNS name
and the path is made of unreserved characters (RFC 3986 letters, digits, `-._~`) between single
slashes. No percent-encoding, query, fragment or credentials, so nothing decodes into something
else after admission and no proxy normalizes the path differently from the rule.
"""

from __future__ import annotations

DNS_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
PATH_SEGMENT = r"[A-Za-z0-9._~-]+"
URL_SHAPE = rf"^https?://{DNS_LABEL}(\.{DNS_LABEL})*(:[0-9]{{1,5}})?(/{PATH_SEGMENT})*/?$"
"""http(s)://HOST[:PORT][/PREFIX][/] with lower-case scheme, a DNS host and a plain path."""
USERINFO = r"^[A-Za-z][-+.A-Za-z0-9]*://[^/?#]*@"
"""A URL whose authority carries `user[:password]@`."""
DOT_SEGMENT = r"/[.][.]?(/|$)"
"""A `.` or `..` path segment, which proxies and MLflow would resolve differently."""
NUMERIC_HOST = r"^https?://[0-9.]+(:[0-9]*)?(/.*)?$"
"""An IPv4 address (or any all-numeric host): Ingress and HTTPRoute only take DNS names."""
HOST_MAX_LENGTH = 253
PORT_MAX = 65535

URL_SHAPE_MESSAGE = (
    "url must be http(s)://HOST[:PORT][/PREFIX] with a DNS host name and a path of letters, "
    "digits and '-', '.', '_', '~' between single slashes; no percent-encoding, query or "
    "fragment (they would change the routing rules)"
)
USERINFO_MESSAGE = "url must not contain credentials (user:password@)"
DOT_SEGMENT_MESSAGE = "url path must not contain '.' or '..' segments"
HOST_MESSAGE = (
    f"url host must be a DNS name of at most {HOST_MAX_LENGTH} characters, not an IP address, "
    f"and its port at most {PORT_MAX}"
)
