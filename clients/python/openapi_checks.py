"""schemathesis checks of pimesh's own (loaded through SCHEMATHESIS_HOOKS by test_openapi_fuzz.py)."""

import json

import schemathesis

# 400s that are not about one field: the body as a whole is not a JSON object.
WHOLE_BODY = ("the body is", "the body must be")


@schemathesis.check
def errors_are_json_that_name_the_field(ctx, response, case):
    """Every 4xx is a JSON error a client can act on; a 400 names the field or parameter at fault."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} is not JSON: {response.content[:200]!r}")
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        raise AssertionError(f"{response.status_code} has no error sentence: {body!r}")
    # The field may be "" itself: a body that has a key named "".
    if response.status_code == 400 and "field" not in body and not body["error"].startswith(WHOLE_BODY):
        raise AssertionError(f"400 does not name its field: {body!r}")
    return None
