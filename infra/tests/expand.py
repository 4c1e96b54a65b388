"""Fn::ForEach (the AWS::LanguageExtensions transform) applied offline, for the tests and for checkov.

CloudFormation expands the loops itself when the stack is deployed. The checks need the expanded template
earlier: samtranslator and moto do not know Fn::ForEach, and checkov skips what is inside a loop. This covers what
the language extensions define for a loop and what infra/template.yaml uses of it: a collection that is a list or
a Ref to a CommaDelimitedList parameter; `${Id}` and `&{Id}` (non-alphanumerics dropped) in the output keys and in
strings; `{"Ref": Id}` replaced by the item; loops in Resources, Outputs, Conditions and inside properties,
nested loops. Anything else in a loop is an error here rather than a silently wrong expansion.

    python3 infra/tests/expand.py [--companies N] > expanded.json   # the template with N sample companies
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
FOREACH = "Fn::ForEach::"


def expand(template: dict, parameters: dict) -> dict:
    """The template as CloudFormation sees it after AWS::LanguageExtensions, with these parameter values."""
    t = copy.deepcopy(template)
    transform = t.get("Transform")
    if isinstance(transform, list):
        rest = [x for x in transform if x != LANGUAGE_EXTENSIONS]
        t["Transform"] = rest[0] if len(rest) == 1 else rest
    elif transform == LANGUAGE_EXTENSIONS:
        del t["Transform"]
    for section in ("Conditions", "Resources", "Outputs"):
        if section in t:
            t[section] = _walk(t[section], t, parameters)
    return t


def _walk(node, template: dict, parameters: dict):
    if isinstance(node, list):
        return [_walk(x, template, parameters) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        if key.startswith(FOREACH):
            for k, v in _loop(key, value, template, parameters).items():
                if k in out:
                    raise ValueError(f"{key} produces {k}, which already exists")
                out[k] = v
        else:
            if key in out:
                raise ValueError(f"duplicate key {key}")
            out[key] = _walk(value, template, parameters)
    return out


def _loop(name: str, spec, template: dict, parameters: dict) -> dict:
    if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[2], dict)):
        raise ValueError(f"{name}: expected [Identifier, Collection, {{OutputKey: OutputValue}}]")
    ident, collection, fragment = spec
    items = _collection(name, collection, template, parameters)
    out: dict = {}
    for item in items:
        # Substitute first, then expand: an inner loop may use the outer identifier in its collection or keys.
        expanded = _walk(_substitute(fragment, ident, item), template, parameters)
        for k, v in expanded.items():
            if k in out:
                raise ValueError(f"{name}: key {k} produced twice (an item repeats in the collection?)")
            out[k] = v
    return out


def _collection(name: str, collection, template: dict, parameters: dict) -> list[str]:
    if isinstance(collection, list):
        return [str(x) for x in collection]
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        param = collection["Ref"]
        decl = template.get("Parameters", {}).get(param)
        if decl is None or decl.get("Type") != "CommaDelimitedList":
            raise ValueError(f"{name}: the collection refers to {param}, which is not a CommaDelimitedList parameter")
        value = parameters.get(param, decl.get("Default"))
        if value is None:
            raise ValueError(f"{name}: parameter {param} has no value")
        return value if isinstance(value, list) else str(value).split(",")
    raise ValueError(f"{name}: unsupported collection {collection!r}")


def _substitute(node, ident: str, item: str):
    plain = re.sub(r"[^A-Za-z0-9]", "", item)

    def text(s: str) -> str:
        return s.replace("${" + ident + "}", item).replace("&{" + ident + "}", plain)

    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] == ident:
            return item
        return {text(k): _substitute(v, ident, item) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(x, ident, item) for x in node]
    if isinstance(node, str):
        return text(node)
    return node


SAMPLE_COMPANIES = ["usmf=US Sales", "usrt=0b9cf0a4-63e2-4dd7-9a54-6a7c1c0e3f8d", "demf=DE", "gbsi=GB Sales", "jpmf=JP"]


def sample_companies(n: int) -> list[str]:
    """n valid Companies entries: the five samples, then generated ones (c0..c9zz)."""
    out = SAMPLE_COMPANIES[:n]
    i = 0
    while len(out) < n:
        out.append(f"c{i:03d}=Business unit {i}")
        i += 1
    return out


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from cfnlint.decode import cfn_yaml

    n = 5
    if argv[:1] == ["--companies"]:
        n = int(argv[1])
    root = Path(__file__).resolve().parents[2]
    raw = json.loads(json.dumps(cfn_yaml.loads((root / "infra" / "template.yaml").read_text())))
    json.dump(expand(raw, {"Companies": sample_companies(n)}), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
