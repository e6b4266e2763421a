"""Checks a bake file by the Bake file reference's rules: the schema in
docker-bake.schema.json (blocks, target attributes and their types), then what a schema
cannot say: groups name existing targets, contexts hold their Dockerfile, cache entries
are registry caches, tags are image references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).with_name("docker-bake.schema.json")


def check_bake_file(definition: dict[str, Any]) -> None:
    import jsonschema

    from mlbox.catalog import check_image_ref

    jsonschema.validate(definition, json.loads(SCHEMA.read_text()))
    targets = definition["target"]
    for group, body in definition.get("group", {}).items():
        unknown = set(body["targets"]) - set(targets) - set(definition["group"])
        assert not unknown, f"group {group} names unknown targets {unknown}"
    for name, target in targets.items():
        context = Path(target["context"])
        assert context.is_absolute(), f"{name}: a relative context is resolved against bake's working directory"
        assert (context / target.get("dockerfile", "Dockerfile")).is_file(), f"{name}: no Dockerfile in {context}"
        for tag in target["tags"]:
            check_image_ref(tag, what=f"{name} tag")
        for entry in target.get("cache-from", []) + target.get("cache-to", []):
            fields = dict(part.split("=", 1) for part in entry.split(","))
            assert fields["type"] == "registry", entry
            check_image_ref(fields["ref"], what=f"{name} cache ref")
            assert fields.get("mode", "max") in ("min", "max"), entry
