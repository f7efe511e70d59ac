"""How fast ``manage.py audit_export`` writes a bundle, and whether its memory stays flat.

Runs against a ledger already loaded (``bench/verify_speed.py --load N`` fills one). Each export
runs in a fresh process that reports its own peak resident memory, so the figures do not mix.
Measured: the whole trail; the events before a time that covers about a tenth of it (same code,
ten times fewer rows: flat memory means the same peak); one model's trail (a filtered export with
inclusion proofs, which walks every leaf up to the checkpoint); and the offline verifier on the
whole-trail bundle.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_verifyperf .venv/bin/python bench/export_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEAK = "import resource, sys; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
EXPORT = (
    "import os, sys, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
    "from django.core.management import call_command; call_command('audit_export', *sys.argv[1:]); " + PEAK
)
VERIFY = (
    "import runpy, sys; sys.argv[0] = 'offline_verify'\ntry:\n runpy.run_module('audit.offline_verify', run_name='__main__')\nfinally:\n "
    + PEAK
)


def run(code: str, *args: str, env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MiB, and the output of one fresh Python process."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"failed: {args}\n{done.stdout}\n{done.stderr}")
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib // 1024, done.stdout.strip()


def scalar(sql: str, env: dict[str, str]) -> Any:
    code = (
        "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup()\n"
        "from django.db import connection\nwith connection.cursor() as c:\n"
        f" c.execute({sql!r}); print(c.fetchone()[0])"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--key-dir", type=Path, default=Path(os.environ.get("VERIFY_SPEED_STATE", "/tmp/warden_verify_speed"))
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    private = (options.key_dir / "signing.key").read_text().strip()
    env = dict(os.environ, AUDIT_SIGNING_KEY=private, AUDIT_WITNESS_DIR=str(options.key_dir / "export-witness"))
    sys.path.insert(0, str(ROOT))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit import signing

    public = signing.public_hex(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private)))
    events = int(scalar("SELECT count(*) FROM audit_auditevent", env))
    tenth = scalar(f"SELECT occurred_at FROM audit_auditevent WHERE seq = {max(events // 10, 1)}", env)
    model = scalar("SELECT model_name FROM audit_auditevent WHERE model_name <> '' ORDER BY seq LIMIT 1", env)
    results: dict[str, Any] = {"events": events}
    scratch = Path(tempfile.mkdtemp(prefix="warden-export-bench-"))
    try:
        cases = {
            "whole trail": [],
            "first tenth (--to)": ["--to", tenth],
            f"one model ({model})": ["--model", model],
        }
        print(f"{events:,} events in the ledger, {os.cpu_count()} cores")
        print(f"{'export':<28} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13} {'bundle MiB':>11}")
        for label, args in cases.items():
            out = scratch / label.split()[0]
            seconds, peak, _ = run(EXPORT, str(out), *args, env=env)
            manifest = json.loads((out / "manifest.json").read_text())
            size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
            rate = manifest["events"] / seconds
            print(f"{label:<28} {manifest['events']:>10,} {seconds:>8.2f} {rate:>10,.0f} {peak:>13} {size:>11.0f}")
            results[label] = {"rows": manifest["events"], "seconds": seconds, "rows_per_s": rate, "peak_rss_mib": peak}
        whole = scratch / "whole"
        rows = results["whole trail"]["rows"]
        seconds, peak, output = run(VERIFY, str(whole), "--pubkey", public, env=env)
        rate = rows / seconds
        print(f"{'offline verify, whole trail':<28} {rows:>10,} {seconds:>8.2f} {rate:>10,.0f} {peak:>13}")
        results["offline verify"] = {"rows": rows, "seconds": seconds, "rows_per_s": rate, "peak_rss_mib": peak}
        assert output.startswith("verified:"), output
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
