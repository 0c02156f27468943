#!/usr/bin/env python3
"""Print the lib.rs path of each crate named on the command line, in the version
that nsvm-core depends on according to Cargo.lock (cargo metadata --locked), as
KEY=PATH lines for make. Fetches the sources (cargo fetch) when missing."""
import json, os, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--locked"], cwd=root))
pkgs = {p["id"]: p for p in meta["packages"]}
core = next(n for n in meta["resolve"]["nodes"] if pkgs[n["id"]]["name"] == "nsvm-core")
for name in sys.argv[1:]:
    dep = next(d for d in core["deps"] if pkgs[d["pkg"]]["name"] == name)
    pkg = pkgs[dep["pkg"]]
    lib = next(t for t in pkg["targets"] if "lib" in t["kind"])
    if not os.path.exists(lib["src_path"]):
        subprocess.check_call(["cargo", "fetch", "--locked"], cwd=root)
    print(f"NSVM_{name.upper()}_SRC={lib['src_path']}")
