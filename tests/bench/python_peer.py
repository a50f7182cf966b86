#!/usr/bin/env python3
"""The peer to beat (see DESIGN.md): a stdlib-only Python script that pulls a
FHIR search with paging into SQLite, one transaction per page, the way a
hand-written ETL script does. Prints one JSON line with its figures.

usage: python_peer.py BASE_URL TYPE PAGE_SIZE DB_PATH
"""
import json
import resource
import sqlite3
import sys
import time
import urllib.request


def main():
    base, rtype, count, db = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS resources(type TEXT, id TEXT, version TEXT,"
                " last_updated TEXT, body BLOB, PRIMARY KEY(type, id))")
    url = f"{base}/{rtype}?_count={count}&_sort=_lastUpdated"
    t0 = time.time()
    n = 0
    while url:
        with urllib.request.urlopen(url) as r:
            page = json.load(r)
        rows = []
        for e in page.get("entry", []):
            res = e["resource"]
            meta = res.get("meta", {})
            rows.append((res["resourceType"], res["id"], meta.get("versionId"),
                         meta.get("lastUpdated"), json.dumps(res).encode()))
        with con:
            con.executemany("INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?)", rows)
        n += len(rows)
        url = next((l["url"] for l in page.get("link", []) if l.get("relation") == "next"), None)
    el = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peer": "python", "resources": n, "elapsed_s": round(el, 3),
                      "per_s": round(n / el), "peak_rss_kb": rss}))


if __name__ == "__main__":
    main()
