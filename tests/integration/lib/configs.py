"""Small builders for the JSON configs the tests start servers with."""

LISTEN = "127.0.0.1:{port}"


def routes_config(routes, http=None, listener=LISTEN):
    """One listener passing to an array of routes."""
    conf = {"listeners": {listener: {"pass": "routes"}}, "routes": routes}
    if http is not None:
        conf["settings"] = {"http": http}
    return conf


def share_config(docroot, http=None, **action):
    """One listener serving docroot$uri (extra keys go into the action)."""
    act = {"share": str(docroot) + "$uri"}
    act.update(action)
    return routes_config([{"action": act}], http=http)


def return_config(status=200, http=None):
    return routes_config([{"action": {"return": status}}], http=http)
