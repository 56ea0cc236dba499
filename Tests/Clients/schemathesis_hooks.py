"""Schemathesis hooks for api_schema_test.py: the run's bearer token is a throwaway that may be
revoked mid-run.

DELETE /api/tokens/{id} can revoke the very token a run authenticates with (the stateful phase
links POST/GET /api/tokens to it). So requests carry `current`, one of two tokens minted from the
bootstrap token (ST_TOKEN); when a DELETE revokes one, the other takes over and a new spare is
minted. Every route, that DELETE included, is exercised, and the run never loses its credentials.
As an auth provider (not a fixed header), it lets the `ignored_auth` check strip or forge it.
"""
import json
import os
import threading
import urllib.request

import schemathesis

BASE = os.environ["ST_BASE"].rstrip("/")
_lock = threading.Lock()
_tokens = {"current": None, "spare": None}


def _mint(with_token, name):
    request = urllib.request.Request(BASE + "/api/tokens", data=json.dumps({"name": name}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {with_token}", "Content-Type": "application/json"})
    body = json.load(urllib.request.urlopen(request, timeout=10))
    return body["token"], body["id"].lower()


def _refill():
    """Called with the lock held."""
    if _tokens["current"] is None:
        _tokens["current"] = _mint(os.environ["ST_TOKEN"], "schemathesis")
    if _tokens["spare"] is None:
        _tokens["spare"] = _mint(_tokens["current"][0], "schemathesis-spare")


@schemathesis.auth(refresh_interval=None)
class ThrowawayBearer:
    def get(self, case, ctx):
        with _lock:
            _refill()
            return _tokens["current"][0]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def after_call(context, case, response):
    if case.method.upper() != "DELETE" or case.operation.path != "/api/tokens/{id}" or response.status_code != 204:
        return
    revoked = str((case.path_parameters or {}).get("id", "")).lower()
    with _lock:
        if _tokens["current"] and _tokens["current"][1] == revoked:
            _tokens["current"], _tokens["spare"] = _tokens["spare"], None
        elif _tokens["spare"] and _tokens["spare"][1] == revoked:
            _tokens["spare"] = None
        _refill()
