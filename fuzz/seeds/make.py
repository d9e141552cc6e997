#!/usr/bin/env python3
"""Write the raw seed corpora (fuzz/seeds/raw/<target>/) from the test fixtures and examples:
AdmissionReviews made from every fixture object (CREATE and UPDATE), ConfigMaps and env files,
multi-document YAML streams. `fuzz/seeds/minimise.sh` then keeps a minimal set in fuzz/corpus/."""
import glob, json, os, sys
import yaml

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
out = os.path.join(root, "fuzz", "seeds", "raw")
fixtures = sorted(glob.glob(os.path.join(root, "tests/fixtures/*.yaml"))) + \
    sorted(glob.glob(os.path.join(root, "examples/*.yaml")))

def write(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def review(obj, op):
    api = obj.get("apiVersion", "v1")
    group, _, version = api.rpartition("/")
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": kind.lower() + "s"}
    req = {"uid": "u1", "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
           "name": meta.get("name", ""), "namespace": meta.get("namespace", "carto"),
           "operation": op, "userInfo": {"username": "admin"}, "object": obj,
           "oldObject": obj if op == "UPDATE" else None, "dryRun": False}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}

for path in fixtures:
    base = os.path.basename(path).rsplit(".", 1)[0]
    text = open(path).read()
    if len(text) <= 16384:  # larger streams slow every execution; their objects come next
        write("review", base + ".yaml", text)
        if "ConfigMap" in text:
            write("config", base + ".yaml", text)
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    for i, obj in enumerate(docs):
        if obj.get("kind") == "ConfigMap":
            write("config", "%s-%d.yaml" % (base, i), yaml.safe_dump(obj, sort_keys=False))
        write("review", "%s-%d.yaml" % (base, i), yaml.safe_dump(obj, sort_keys=False))
        for op in ("CREATE", "UPDATE"):
            write("admission", "%s-%d-%s.json" % (base, i, op.lower()),
                  json.dumps(review(obj, op), separators=(",", ":")))
for path in sorted(glob.glob(os.path.join(root, "examples/admission-review-*.json"))):
    write("admission", os.path.basename(path), open(path, "rb").read())
for path in sorted(glob.glob(os.path.join(root, "tests/fixtures/*.env"))):
    write("config", os.path.basename(path), open(path, "rb").read())
