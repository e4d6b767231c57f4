"""Write the JSON schema of one version of a CustomResourceDefinition (its ``openAPIV3Schema``).

    python deploy/schemas/extract_crd_schema.py ray.io_rayclusters.yaml v1 raycluster-ray-v1.json \
        --source "ray-project/kuberay v1.7.0 ray-operator/config/crd/bases/ray.io_rayclusters.yaml"

The schema is written as it is in the CRD (compact JSON, keys in their order), with a ``$comment`` naming
its source. deploy/validate.py makes it strict (no unknown fields) when it loads it, as the API server's
strict field validation does, rather than changing the vendored copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def extract(crd_path: Path, version: str) -> dict:
    crd = yaml.safe_load(crd_path.read_text(encoding="utf-8"))
    if crd.get("kind") != "CustomResourceDefinition":
        raise SystemExit(f"{crd_path}: not a CustomResourceDefinition")
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise SystemExit(f"{crd_path}: no version {version!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crd", type=Path)
    ap.add_argument("version")
    ap.add_argument("out", type=Path)
    ap.add_argument("--source", required=True, help="where the CRD came from (repository, tag, path)")
    args = ap.parse_args(argv)
    schema = {"$comment": f"openAPIV3Schema of {args.version} from {args.source} (Apache-2.0)",
              **extract(args.crd, args.version)}
    args.out.write_text(json.dumps(schema, separators=(",", ":")) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
