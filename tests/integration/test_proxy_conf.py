"""Validation of Unit's "proxy" action and "upstreams" (Unit 1.35's rules
and messages, measured against a real unitd on the same configs), and the
"pass" forms that reach an upstream."""

import json

import pytest

from lib.configs import routes_config

LISTEN = "LISTEN"  # replaced by the server's own listener

U = {"u": {"servers": {"127.0.0.1:9": {}}}}


def conf(routes=(), upstreams=None, listeners=None):
    c = {"listeners": listeners or {LISTEN: {"pass": "routes"}},
         "routes": list(routes)}
    if upstreams is not None:
        c["upstreams"] = upstreams
    return c


def act(**a):
    return [{"action": a}]


ACCEPTED = {
    "proxy_ipv4": conf(act(proxy="http://127.0.0.1:9")),
    "proxy_ipv6": conf(act(proxy="http://[::1]:9")),
    "proxy_unix": conf(act(proxy="http://unix:/tmp/x.sock")),
    "proxy_any": conf(act(proxy="http://*:9")),
    "proxy_with_common": conf(act(proxy="http://127.0.0.1:9",
                                  response_headers={"A": "b"},
                                  rewrite="/x")),
    "upstream_weights": conf(act(pass_="upstreams/u"), {
        "u": {"servers": {"127.0.0.1:9": {}, "[::1]:9": {"weight": 2}}}}),
    # Wharf's host names (issue 10; Unit refuses them).
    "proxy_hostname": conf(act(proxy="http://localhost:9")),
    "server_hostname": conf(act(pass_="upstreams/u"), {
        "u": {"servers": {"localhost:9": {}}}}),
    "upstream_unix": conf(act(pass_="upstreams/u"), {
        "u": {"servers": {"unix:/tmp/x": {}}}}),
    "upstream_no_servers": conf(act(pass_="upstreams/u"), {
        "u": {"servers": {}}}),
    "weight_zero": conf(act(pass_="upstreams/u"), {
        "u": {"servers": {"127.0.0.1:9": {"weight": 0}}}}),
    "weight_fraction": conf(act(pass_="upstreams/u"), {
        "u": {"servers": {"127.0.0.1:9": {"weight": 0.5}}}}),
    "pass_variable": conf(act(pass_="upstreams/$host"), U),
    "listener_pass": conf(upstreams=U, listeners={
        LISTEN: {"pass": "upstreams/u"}}),
    "empty_name": conf(upstreams={"": {"servers": {"127.0.0.1:9": {}}}}),
    # Wharf's extensions
    "proxy_settings": conf(act(proxy="http://127.0.0.1:9", proxy_settings={
        "connect_timeout": 1.5, "send_timeout": 2, "header_read_timeout": 3,
        "body_read_timeout": 4, "x_forwarded": True, "forwarded": False,
        "trusted_sources": ["10.0.0.0/8", "127.0.0.1"],
        "host": "$host", "idle_connections": 8, "idle_timeout": 0.5})),
    "upstream_settings": conf(act(pass_="upstreams/u"), {"u": {
        "servers": {"127.0.0.1:9": {}},
        "settings": {"connect_timeout": 1, "forwarded": True}}}),
}

EXT = "http://127.0.0.1:9"

REFUSED = {
    "proxy_no_port": (conf(act(proxy="http://127.0.0.1")),
                      'The "proxy" address is invalid "127.0.0.1"'),
    # Wharf takes host names (issue 10); one that is not a name fails
    # as any invalid address does in Unit.
    "proxy_hostname": (conf(act(proxy="http://bad_host:80")),
                       'The "proxy" address is invalid "bad_host:80"'),
    # (Unit refuses "https://"; Wharf speaks TLS to it: test_proxy_tls.py)
    "proxy_https_path": (conf(act(proxy="https://127.0.0.1:9/x")),
                         'The "proxy" address is invalid "127.0.0.1:9/x"'),
    "proxy_path": (conf(act(proxy="http://127.0.0.1:9/x")),
                   'The "proxy" address is invalid "127.0.0.1:9/x"'),
    "proxy_port_0": (conf(act(proxy="http://127.0.0.1:0")),
                     'The "proxy" address is invalid "127.0.0.1:0"'),
    "proxy_number": (conf(act(proxy=1)),
                     'The "proxy" value must be a string, but not an '
                     'integer number.'),
    "proxy_unknown_key": (conf(act(proxy="http://127.0.0.1:9", foo=1)),
                          'Unknown parameter "foo".'),
    "proxy_and_share": (conf(act(proxy="http://127.0.0.1:9", share="/x")),
                        'The "action" object must have just one of "pass", '
                        '"return", "share", or "proxy" options set.'),
    "upstream_without_servers": (conf(upstreams={"u": {}}),
                                 'The "u" upstream must contain "servers" '
                                 'object value.'),
    "servers_array": (conf(upstreams={"u": {"servers": []}}),
                      'The "servers" value must be an object, but not an '
                      'array.'),
    "upstream_number": (conf(upstreams={"u": 1}),
                        'The "u" value must be an object, but not an '
                        'integer number.'),
    "upstreams_array": (conf(upstreams=[]),
                        'The "upstreams" value must be an object, but not '
                        'an array.'),
    "server_hostname": (conf(upstreams={"u": {"servers": {
        "bad_host:9": {}}}}),
        'The "bad_host:9" is not valid server address.'),
    "server_no_port": (conf(upstreams={"u": {"servers": {
        "127.0.0.1": {}}}}),
        'The "127.0.0.1" is not valid server address.'),
    "server_number": (conf(upstreams={"u": {"servers": {
        "127.0.0.1:9": 1}}}),
        'The "127.0.0.1:9" value must be an object, but not an integer '
        'number.'),
    "weight_negative": (conf(upstreams={"u": {"servers": {
        "127.0.0.1:9": {"weight": -1}}}}),
        'The "weight" number must be positive.'),
    "weight_too_big": (conf(upstreams={"u": {"servers": {
        "127.0.0.1:9": {"weight": 1000001}}}}),
        'The "weight" number must not exceed 1,000,000'),
    "weight_string": (conf(upstreams={"u": {"servers": {
        "127.0.0.1:9": {"weight": "1"}}}}),
        'The "weight" value must be either an integer number or a '
        'fractional number, but not a string.'),
    "server_unknown_key": (conf(upstreams={"u": {"servers": {
        "127.0.0.1:9": {"backup": True}}}}),
        'Unknown parameter "backup".'),
    "upstream_unknown_key": (conf(upstreams={"u": {
        "servers": {"127.0.0.1:9": {}}, "x": 1}}),
        'Unknown parameter "x".'),
    "pass_missing": (conf(act(pass_="upstreams/v"), U),
                     'Request "pass" points to invalid location '
                     '"upstreams/v".'),
    "pass_three_segments": (conf(act(pass_="upstreams/u/x"), U),
                            'Request "pass" points to invalid location '
                            '"upstreams/u/x".'),
    "pass_no_name": (conf(act(pass_="upstreams"), U),
                     'Request "pass" points to invalid location '
                     '"upstreams".'),
    # Wharf's extensions
    "settings_unknown": (conf(act(proxy=EXT, proxy_settings={"x": 1})),
                         'Unknown parameter "x".'),
    "settings_not_object": (conf(act(proxy=EXT, proxy_settings=1)),
                            'The "proxy_settings" value must be an object, '
                            'but not an integer number.'),
    "timeout_zero": (conf(act(proxy=EXT, proxy_settings={
        "connect_timeout": 0})),
        'The "connect_timeout" number must be greater than 0 and at most '
        '2147483.'),
    "timeout_string": (conf(act(proxy=EXT, proxy_settings={
        "send_timeout": "1"})),
        'The "send_timeout" value must be either an integer number or a '
        'fractional number, but not a string.'),
    "x_forwarded_string": (conf(act(proxy=EXT, proxy_settings={
        "x_forwarded": "yes"})),
        'The "x_forwarded" value must be a boolean, but not a string.'),
    "idle_negative": (conf(act(proxy=EXT, proxy_settings={
        "idle_connections": -1})),
        'The "idle_connections" number must be between 0 and 1024.'),
    "idle_fraction": (conf(act(proxy=EXT, proxy_settings={
        "idle_connections": 1.5})),
        'The "idle_connections" value must be an integer number, but not a '
        'fractional number.'),
    "host_empty": (conf(act(proxy=EXT, proxy_settings={"host": ""})),
                   'The "host" value must not be empty.'),
    "trusted_bad": (conf(act(proxy=EXT, proxy_settings={
        "trusted_sources": "nonsense"})), None),
    "settings_on_pass": (conf(act(pass_="upstreams/u",
                                  proxy_settings={}), U),
                         'Unknown parameter "proxy_settings".'),
    "upstream_settings_unknown": (conf(upstreams={"u": {
        "servers": {"127.0.0.1:9": {}}, "settings": {"y": 1}}}),
        'Unknown parameter "y".'),
}


def fix(c, server):
    """pass_ (a Python keyword dodge) back to "pass", and the server's
    listener (the same socket in every config, so fds do not move)."""
    text = json.dumps(c).replace('"pass_"', '"pass"')
    return json.loads(text.replace(LISTEN, server.listeners()[0]))


@pytest.fixture
def server(wharf):
    return wharf(routes_config([{"action": {"return": 204}}]))


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted(server, name):
    api = server.api()
    c = fix(ACCEPTED[name], server)
    r = api.put("/config", c)
    assert r.status == 200, r.json
    assert api.config() == c


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_units_message(server, name):
    api = server.api()
    c, detail = REFUSED[name]
    r = api.put("/config", fix(c, server))
    assert r.status == 400, r.json
    assert r.json["error"] == "Invalid configuration.", r.json
    if detail is not None:
        assert r.json["detail"] == detail, r.json
