#!/usr/bin/env bash
# The audit ledger's benchmark in one run, on this machine's PostgreSQL: audited appends at 1, 4
# and 16 writers next to plain inserts; then, on a ledger of 1,000,000 events (loaded once, with a
# signed checkpoint every 1,000), audit_verify's rows/s and the export's rows/s and peak memory.
# Appends the output to bench/results/audit-ledger-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
ledger=${LEDGER_DB:-warden_ledger_bench}
export VERIFY_SPEED_STATE=${VERIFY_SPEED_STATE:-/tmp/warden_ledger_bench}
out=bench/results/audit-ledger-$(date +%F).md
mkdir -p bench/results

{
  echo "# Audit ledger benchmark — $(date -u '+%F %H:%M UTC')"
  echo
  echo "$(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo '## Appends (bench/audit_appends.py)'
  echo
  DATABASE_URL=$server/warden_bench .venv/bin/python bench/audit_appends.py
  echo
  echo '## Verify (bench/verify_speed.py)'
  echo
  echo '```'
  psql "$server/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$ledger'" | grep -q 1 || {
    psql "$server/postgres" -qc "CREATE DATABASE $ledger"
    DATABASE_URL=$server/$ledger .venv/bin/python manage.py migrate -v0
  }
  events=$(psql "$server/$ledger" -Atqc "SELECT count(*) FROM audit_auditevent")
  load=$([ "$events" -ge 1000000 ] && echo 0 || echo 1000000)
  DATABASE_URL=$server/$ledger .venv/bin/python bench/verify_speed.py --load "$load" --checkpoints 1000 --parts
  echo '```'
  echo
  echo '## Export (bench/export_speed.py)'
  echo
  echo '```'
  DATABASE_URL=$server/$ledger .venv/bin/python bench/export_speed.py --key-dir "$VERIFY_SPEED_STATE"
  echo '```'
} | tee -a "$out"
