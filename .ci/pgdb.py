"""Create, drop or ping a PostgreSQL database for the test run: pgdb.py ACTION ADMIN_URL [NAME].

``drop`` also drops the databases the suite made beside NAME (``NAME_template``,
``NAME_second``…), so a run leaves nothing behind even when pytest was interrupted.
"""

import re
import sys

import psycopg


def main() -> int:
    action, url = sys.argv[1], sys.argv[2]
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        return 1
    with conn:
        if action == "ping":
            return 0
        name = sys.argv[3]
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise SystemExit(f"bad database name {name!r}")
        if action == "create":
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        elif action == "drop":
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname = %s "
                                "OR starts_with(datname, %s)", (name, name + "_")).fetchall()
            for (found,) in rows:
                conn.execute(f'DROP DATABASE IF EXISTS "{found}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
