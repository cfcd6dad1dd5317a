"""Small builders for the JSON configs the tests start servers with."""

import os

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


def _unit_configs_dir():
    """shared/unit-configs beside the repository (WF_UNIT_CONFIGS
    overrides); the tests that need it skip when it is absent."""
    env = os.environ.get("WF_UNIT_CONFIGS")
    if env:
        return env
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    for cand in (os.path.join(repo, "..", "shared", "unit-configs"),
                 "/work/shared/unit-configs"):
        if os.path.isdir(cand):
            return os.path.normpath(cand)
    return "/nonexistent/unit-configs"


UNIT_CONFIGS_DIR = _unit_configs_dir()
