"""Every JSON answer the Swift test suite received from the API, held against the OpenAPI document.

Usage: python api_responses_check.py responses.ndjson   (in .venv-tools, which has jsonschema)
The file is what the suite's APIClient wrote with API_RESPONSE_LOG set (one JSON line per answer);
the document is the suite's own GET /api/openapi.json among them. For each answer on a documented
path: its status must be documented for the operation, and a JSON body must validate against the
documented schema (JSON Schema 2020-12, as OpenAPI 3.1 uses), with objects closed to fields the
document does not name. Any undocumented status or field, or a field of the wrong type, fails, with
the operation and the first problems.
"""
import json
import re
import sys
from collections import defaultdict

import jsonschema


def closed(schema):
    """The schema with every object that lists its properties closed to others: an answer with a
    field the document does not name fails (the document allows them by default)."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and not any(k in schema for k in ("allOf", "anyOf", "oneOf")):
        result["additionalProperties"] = False
    return result


def main():
    records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    document = next((json.loads(r["body"]) for r in records if r["path"] == "/api/openapi.json" and r["status"] == 200), None)
    if document is None:
        sys.exit("no GET /api/openapi.json among the recorded answers")
    operations = []
    for path, methods in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in methods.items():
            operations.append((pattern, method.upper(), path, operation))

    problems = defaultdict(list)
    checked = 0
    statuses = defaultdict(set)
    for record in records:
        found = next(((path, operation) for pattern, method, path, operation in operations
                      if method == record["method"] and pattern.match(record["path"])), None)
        if found is None:
            continue  # not an API operation (pages, assets, the S3 and worker protocols), or a 404/405 probe
        path, operation = found
        name = f"{record['method']} {path}"
        status = str(record["status"])
        statuses[name].add(status)
        documented = operation.get("responses", {})
        if status not in documented:
            problems[name].append(f"status {status} is not documented ({', '.join(sorted(documented))})")
            continue
        content = documented[status].get("content", {})
        media = record["contentType"].split(";")[0].strip()
        if not content:
            continue
        if media not in content:
            problems[name].append(f"status {status} answered {media or 'no content type'}; documented: {', '.join(content)}")
            continue
        if media != "application/json":
            continue
        schema = closed(dict(content[media]["schema"], components=document["components"]))
        try:
            body = json.loads(record["body"])
        except json.JSONDecodeError:
            problems[name].append(f"status {status}: the body is not JSON")
            continue
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
        checked += 1
        for error in errors[:3]:
            where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
            problems[name].append(f"status {status}: {where}: {error.message[:200]}")

    print(f"{len(records)} answers recorded, {checked} JSON bodies validated against their documented schemas, "
          f"{len(statuses)} of {len(operations)} operations seen")
    if problems:
        for name, found in sorted(problems.items()):
            print(f"  {name}:")
            for problem in sorted(set(found))[:8]:
                print(f"    {problem}")
        sys.exit(f"{sum(len(set(v)) for v in problems.values())} problems in {len(problems)} operations")
    print("  ok: every answer matches the OpenAPI document")


if __name__ == "__main__":
    main()
