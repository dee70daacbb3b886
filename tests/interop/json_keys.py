#!/usr/bin/python3
"""Check our `pkcscca -m keys --dry-run --json` against a PKCS#11 snapshot.

Usage: json_keys.py SNAPSHOT JSON TYPES

SNAPSHOT is an `ock-drill snapshot` file (what openCryptoki reports), JSON our
tool's document, TYPES the comma-separated CKK_ values (hex) the run's -k
searches. The labels of the keys in the document must be exactly the labels
of the snapshot's objects that have CKA_IBM_OPAQUE and one of those key
types; the document must say dry_run and report no object written. Prints the
comparison; exits 1 with the reason on its last line (also in JSON.diff).
"""

import json
import re
import sys


def main():
    snap_path, json_path, types_arg = sys.argv[1:4]
    types = {int(t, 16) for t in types_arg.split(",")}
    objects = {}
    current = None
    with open(snap_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("object "):
                current = bytes.fromhex(line.split(" ", 1)[1]).decode("utf-8", "replace")
                objects[current] = {}
            else:
                _, ty, value = line.split(" ", 2)
                objects[current][int(ty, 16)] = value
    want = []
    for label, attrs in objects.items():
        m = re.match(r"KeyType\(KeyType \{ val: (\d+) \}\)", attrs.get(0x100, ""))
        if 0x80000001 in attrs and m and int(m.group(1)) in types:
            want.append(label)
    with open(json_path) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError as e:
        reason = "stdout is not one JSON document (%s); it starts %r" % (e, text[:80])
        with open(json_path + ".diff", "w") as f:
            f.write(reason + "\n")
        print(reason)
        sys.exit(1)
    got = [k["label"] for k in doc["keys"]]
    problems = []
    if sorted(want) != sorted(got):
        problems.append("keys listed %s, PKCS#11 reports %s" % (sorted(got), sorted(want)))
    if doc.get("dry_run") is not True or doc["summary"].get("objects_written") != 0:
        problems.append("not reported as a dry run writing nothing")
    print("%s: %d keys, as PKCS#11 reports" % (json_path, len(got)))
    if problems:
        with open(json_path + ".diff", "w") as f:
            f.write("\n".join(problems) + "\n")
        print("\n".join(problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
