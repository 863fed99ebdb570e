"""The container files, tested without a Docker engine (none is available here).

``entrypoint.sh`` runs for real under ``/bin/sh`` with fake ``davpack`` and ``sleep`` commands
first on ``PATH``; the Dockerfile and ``compose.yaml`` are parsed and checked for the wiring
the entrypoint and the configuration rely on; the image's HEALTHCHECK command is run against
a live server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LiveServer

from server.config import SCHEMA, load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"

FAKE_DAVPACK = r"""#!/bin/sh
# Records each call as: PID, then the arguments, tab-separated, one call per line.
printf '%s' "$$" >> "$FAKE_STATE/calls"
for arg in "$@"; do printf '\t%s' "$arg" >> "$FAKE_STATE/calls"; done
printf '\n' >> "$FAKE_STATE/calls"
if [ "$1" = db ] && [ "$2" = upgrade ]; then
    n=$(cat "$FAKE_STATE/upgrades" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" > "$FAKE_STATE/upgrades"
    if [ "$n" -le "${FAKE_UPGRADE_FAILURES:-0}" ]; then
        echo "OperationalError: connection refused" >&2
        exit 1
    fi
    echo "database at revision 0001"
    exit 0
fi
if [ "$1" = user ] && [ "$2" = add ]; then
    cat > "$FAKE_STATE/stdin"
    case ${FAKE_USER_ADD:-ok} in
        ok) echo "created $3 (uuid) as administrator"; exit 0 ;;
        exists) echo "davpack: error: a person with e-mail $3 already exists" >&2; exit 1 ;;
        *) echo "davpack: error: database is locked" >&2; exit 1 ;;
    esac
fi
exit "${FAKE_FINAL_STATUS:-0}"
"""

FAKE_SLEEP = r"""#!/bin/sh
printf '%s\n' "$*" >> "$FAKE_STATE/sleeps"
"""


@dataclass
class Run:
    code: int
    pid: int
    stdout: str
    stderr: str
    calls: list[tuple[int, list[str]]]
    sleeps: list[str]
    stdin: str | None

    @property
    def commands(self) -> list[list[str]]:
        return [args for _pid, args in self.calls]


Entrypoint = Callable[..., Run]


@pytest.fixture
def entrypoint(tmp_path: Path) -> Entrypoint:
    """Run entrypoint.sh with fakes first on PATH and only the environment given."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, text in (("davpack", FAKE_DAVPACK), ("sleep", FAKE_SLEEP)):
        path = fakes / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()

    def run(*args: str, shell: list[str] | None = None, **env: str) -> Run:
        for name in ("calls", "upgrades", "sleeps", "stdin"):
            (state / name).unlink(missing_ok=True)
        environ = {"PATH": f"{fakes}:/usr/bin:/bin", "FAKE_STATE": str(state), **env}
        command = [*(shell or ["/bin/sh"]), str(ENTRYPOINT), *args]
        proc = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        calls = []
        if (state / "calls").exists():
            for line in (state / "calls").read_text(encoding="utf-8").splitlines():
                pid, *argv = line.split("\t")
                calls.append((int(pid), argv))
        sleeps = ((state / "sleeps").read_text(encoding="utf-8").splitlines()
                  if (state / "sleeps").exists() else [])
        stdin = (state / "stdin").read_text(encoding="utf-8") if (state / "stdin").exists() \
            else None
        return Run(proc.returncode, proc.pid, out, err, calls, sleeps, stdin)

    return run


PG_URL = "postgresql+psycopg://davpack:pw@postgres:5432/davpack"
SERVE = ["serve", "--host", "0.0.0.0", "--port", "8080"]


# -- entrypoint.sh ---------------------------------------------------------------------------


def test_entrypoint_is_an_executable_posix_script() -> None:
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["/bin/sh", "-n", str(ENTRYPOINT)]).returncode == 0


def test_upgrades_then_execs_the_server(entrypoint: Entrypoint) -> None:
    run = entrypoint(DAVPACK_DATABASE_URL=PG_URL)
    assert run.code == 0, run.stderr
    assert run.commands == [["db", "upgrade"], SERVE]
    serve_pid = run.calls[-1][0]
    assert serve_pid == run.pid  # exec: the server replaced the shell (PID 1 in a container)
    assert run.calls[0][0] != run.pid
    assert run.sleeps == []


def test_server_exit_status_is_the_container_status(entrypoint: Entrypoint) -> None:
    run = entrypoint(FAKE_FINAL_STATUS="3")
    assert run.code == 3
    assert run.commands[-1] == SERVE


def test_port_comes_from_davpack_port(entrypoint: Entrypoint) -> None:
    run = entrypoint(DAVPACK_PORT="9999")
    assert run.commands[-1] == ["serve", "--host", "0.0.0.0", "--port", "9999"]


def test_retries_upgrade_while_postgres_starts(entrypoint: Entrypoint) -> None:
    run = entrypoint(DAVPACK_DATABASE_URL=PG_URL, FAKE_UPGRADE_FAILURES="3")
    assert run.code == 0, run.stderr
    assert run.commands == [["db", "upgrade"]] * 4 + [SERVE]
    assert run.sleeps == ["2", "2", "2"]  # default delay, between attempts only
    assert "database not ready (attempt 1 of 30); retrying in 2s" in run.stderr
    assert "attempt 3 of 30" in run.stderr


def test_gives_up_after_the_configured_attempts(entrypoint: Entrypoint) -> None:
    run = entrypoint(DAVPACK_DATABASE_URL="postgres://u@db/x", FAKE_UPGRADE_FAILURES="99",
                     DAVPACK_DB_RETRIES="4", DAVPACK_DB_RETRY_DELAY="0.5")
    assert run.code == 1
    assert run.commands == [["db", "upgrade"]] * 4  # and no server
    assert run.sleeps == ["0.5"] * 3
    assert "database not ready after 4 attempt(s); giving up" in run.stderr


def test_sqlite_gets_a_single_attempt(entrypoint: Entrypoint) -> None:
    run = entrypoint(DAVPACK_DATABASE_URL="sqlite:////data/davpack.db",
                     FAKE_UPGRADE_FAILURES="1")
    assert run.code == 1
    assert run.commands == [["db", "upgrade"]]
    assert run.sleeps == []
    # and with no URL at all (the image default is SQLite)
    assert entrypoint(FAKE_UPGRADE_FAILURES="1").commands == [["db", "upgrade"]]


def test_creates_the_administrator_from_the_password_file(
        entrypoint: Entrypoint, tmp_path: Path) -> None:
    secret = tmp_path / "admin_password"
    secret.write_text("pässword with spaces\n", encoding="utf-8")
    run = entrypoint(DAVPACK_ADMIN_EMAIL="root@example.org",
                     DAVPACK_ADMIN_PASSWORD_FILE=str(secret))
    assert run.code == 0, run.stderr
    assert run.commands == [["db", "upgrade"],
                            ["user", "add", "root@example.org", "--admin", "--password-stdin"],
                            SERVE]
    assert run.stdin == "pässword with spaces\n"
    assert "created administrator root@example.org" in run.stderr


def test_an_existing_administrator_is_left_alone(
        entrypoint: Entrypoint, tmp_path: Path) -> None:
    secret = tmp_path / "admin_password"
    secret.write_text("pw\n", encoding="utf-8")
    run = entrypoint(DAVPACK_ADMIN_EMAIL="root@example.org",
                     DAVPACK_ADMIN_PASSWORD_FILE=str(secret), FAKE_USER_ADD="exists")
    assert run.code == 0, run.stderr
    assert run.commands[-1] == SERVE
    assert "root@example.org already exists; left unchanged" in run.stderr


def test_other_administrator_failures_stop_the_container(
        entrypoint: Entrypoint, tmp_path: Path) -> None:
    secret = tmp_path / "admin_password"
    secret.write_text("pw\n", encoding="utf-8")
    run = entrypoint(DAVPACK_ADMIN_EMAIL="root@example.org",
                     DAVPACK_ADMIN_PASSWORD_FILE=str(secret), FAKE_USER_ADD="broken")
    assert run.code == 1
    assert SERVE not in run.commands
    assert "database is locked" in run.stderr


def test_unreadable_password_file_stops_the_container(
        entrypoint: Entrypoint, tmp_path: Path) -> None:
    run = entrypoint(DAVPACK_ADMIN_EMAIL="root@example.org",
                     DAVPACK_ADMIN_PASSWORD_FILE=str(tmp_path / "absent"))
    assert run.code == 1
    assert run.commands == [["db", "upgrade"]]
    assert "cannot read DAVPACK_ADMIN_PASSWORD_FILE" in run.stderr


@pytest.mark.parametrize("env", [{"DAVPACK_ADMIN_EMAIL": "root@example.org"},
                                 {"DAVPACK_ADMIN_PASSWORD_FILE": "/run/secrets/x"}, {}],
                         ids=["email-only", "file-only", "neither"])
def test_no_administrator_without_both_variables(entrypoint: Entrypoint,
                                                 env: dict[str, str]) -> None:
    run = entrypoint(**env)
    assert run.code == 0, run.stderr
    assert run.commands == [["db", "upgrade"], SERVE]


def test_arguments_run_another_davpack_command(entrypoint: Entrypoint) -> None:
    run = entrypoint("fixity", "--quiet")
    assert run.commands == [["db", "upgrade"], ["fixity", "--quiet"]]
    assert run.calls[-1][0] == run.pid


@pytest.mark.parametrize("shell", [["dash"], ["bash", "--posix"], ["busybox", "sh"]],
                         ids=lambda s: s[0])
def test_entrypoint_runs_under_other_shells(entrypoint: Entrypoint, tmp_path: Path,
                                            shell: list[str]) -> None:
    if shutil.which(shell[0]) is None:
        pytest.skip(f"{shell[0]} is not installed")
    secret = tmp_path / "pw"
    secret.write_text("pw\n", encoding="utf-8")
    run = entrypoint(shell=shell, DAVPACK_DATABASE_URL=PG_URL, FAKE_UPGRADE_FAILURES="1",
                     DAVPACK_ADMIN_EMAIL="a@example.org", DAVPACK_ADMIN_PASSWORD_FILE=str(secret))
    assert run.code == 0, run.stderr
    assert run.commands == [["db", "upgrade"], ["db", "upgrade"],
                            ["user", "add", "a@example.org", "--admin", "--password-stdin"],
                            SERVE]


def test_entrypoint_directly_through_its_shebang(entrypoint: Entrypoint) -> None:
    run = entrypoint(shell=[])
    assert run.code == 0, run.stderr
    assert run.commands == [["db", "upgrade"], SERVE]


# -- Dockerfile ---------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def test_dockerfile_base_images() -> None:
    bases = [args.split()[0] for word, args in dockerfile() if word == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users and users[-1] == "davpack"
    assert any(word == "RUN" and "useradd" in args and "davpack" in args
               for word, args in stage)
    # nothing runs as root after the switch
    after = stage[[w for w, _ in stage].index("USER"):]
    assert [w for w, _ in after if w == "RUN"] == []


def test_dockerfile_data_volume_and_paths() -> None:
    stage = final_stage()
    volumes = [json.loads(args) if args.startswith("[") else args.split()
               for word, args in stage if word == "VOLUME"]
    assert ["/data"] in volumes
    env = env_of(stage)
    assert env["DAVPACK_DATABASE_URL"] == "sqlite:////data/davpack.db"
    assert env["DAVPACK_STORE_PATH"].startswith("/data/")
    assert env["DAVPACK_STAGING_DIR"].startswith("/data/")
    # the names are real configuration variables, and the values are valid
    config = load_config(environ={k: v for k, v in env.items() if k.startswith("DAVPACK_")})
    assert config.database_url == "sqlite:////data/davpack.db"
    assert config.path("store.path") == Path("/data/store")
    assert config.path("server.staging_dir") == Path("/data/staging")
    assert config.get("server.port") == 8080


def test_dockerfile_port_entrypoint_and_install() -> None:
    stage = final_stage()
    assert [args for word, args in stage if word == "EXPOSE"] == ["8080"]
    entry = [json.loads(args) for word, args in stage if word == "ENTRYPOINT"]
    assert entry == [["/opt/davpack/docker/entrypoint.sh"]]
    assert ("COPY", "docker/entrypoint.sh /opt/davpack/docker/entrypoint.sh") in stage
    assert any(word == "RUN" and "pip install" in args for word, args in stage)
    assert any(word == "RUN" and "pip wheel" in args and args.rstrip().endswith(" .")
               for word, args in dockerfile())


def test_dockerfile_copy_sources_exist_in_the_build_context() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for word, args in dockerfile():
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source not in ignored


def healthcheck_script() -> str:
    (args,) = [args for word, args in final_stage() if word == "HEALTHCHECK"]
    options, _, command = args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    return str(argv[2])


def test_healthcheck_passes_against_a_live_server(live_server: LiveServer) -> None:
    script = healthcheck_script()
    assert "urllib" in script and "/-/health" in script
    port = live_server.url.rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-c", script], env={"DAVPACK_PORT": port},
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_healthcheck_fails_when_nothing_answers() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-c", healthcheck_script()],
                          env={"DAVPACK_PORT": str(port)}, capture_output=True, timeout=30)
    assert done.returncode != 0


def test_dockerignore_keeps_local_state_out() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "var", ".git"} <= lines


# -- compose.yaml -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _plain(value: str) -> str:
    """A compose value with ``${VAR:-default}`` / ``${VAR:?msg}`` reduced to the variable."""
    return re.sub(r"\$\{([A-Z_]+)(?::?[-?][^}]*)?\}", r"<\1>", value)


def test_compose_services_and_volumes() -> None:
    data = compose()
    assert set(data["services"]) == {"davpack", "postgres"}
    pg = data["services"]["postgres"]
    assert pg["image"] == "postgres:16"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    app = data["services"]["davpack"]
    assert app["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert app["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (DOCKER / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == (
        DOCKER / "Dockerfile")
    named = set(data["volumes"])
    used = {spec.split(":")[0] for svc in data["services"].values()
            for spec in svc.get("volumes", [])}
    assert used == named == {"pgdata", "davpack-data"}
    assert "davpack-data:/data" in app["volumes"]
    assert any(spec.endswith(":8080") for spec in app["ports"])


def test_compose_wires_the_environment_the_entrypoint_reads() -> None:
    data = compose()
    app = data["services"]["davpack"]
    env = {k: str(v) for k, v in app["environment"].items()}
    pg_env = data["services"]["postgres"]["environment"]

    url = _plain(env["DAVPACK_DATABASE_URL"])
    assert url.startswith("postgres")  # the entrypoint's cue to wait and retry
    user = pg_env["POSTGRES_USER"]
    database = pg_env["POSTGRES_DB"]
    password = _plain(pg_env["POSTGRES_PASSWORD"])
    assert url == f"postgresql+psycopg://{user}:{password}@postgres:5432/{database}"
    assert f"-U {user} -d {database}" in " ".join(data["services"]["postgres"]["healthcheck"]
                                                   ["test"])

    assert env["DAVPACK_PORT"] == "8080"
    secret_path = env["DAVPACK_ADMIN_PASSWORD_FILE"]
    assert secret_path.startswith("/run/secrets/")
    secret = secret_path.rsplit("/", 1)[1]
    assert secret in app["secrets"] and secret in data["secrets"]
    assert _plain(env["DAVPACK_ADMIN_EMAIL"]) == "<DAVPACK_ADMIN_EMAIL>"

    entry_vars = set(re.findall(r"\$\{?(DAVPACK_[A-Z_]+)", ENTRYPOINT.read_text()))
    config_vars = {key.env for keys in SCHEMA.values() for key in keys.values() if key.env}
    assert set(env) <= entry_vars | config_vars, "a variable nobody reads"
    assert {"DAVPACK_DATABASE_URL", "DAVPACK_ADMIN_EMAIL", "DAVPACK_ADMIN_PASSWORD_FILE",
            "DAVPACK_PORT"} <= set(env)


def test_docker_readme_documents_the_entrypoint_variables() -> None:
    readme = (DOCKER / "README.md").read_text(encoding="utf-8")
    for name in set(re.findall(r"\$\{?(DAVPACK_[A-Z_]+)", ENTRYPOINT.read_text())):
        assert f"`{name}`" in readme, name
    assert "not" in readme.lower() and "engine" in readme.lower()


def test_local_secrets_are_kept_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text()
    assert "docker/.env" in ignored and "docker/*.txt" in ignored
    assert os.path.basename(compose()["secrets"]["davpack_admin_password"]["file"]).endswith(
        ".txt")


# -- the entrypoint with the real davpack ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    import time

    import requests

    proc = subprocess.Popen(["/bin/sh", str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{env['DAVPACK_PORT']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"entrypoint exited with {proc.returncode}: {out}\n{err}")
        try:
            if requests.get(f"{url}/-/health", timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("the server did not answer within 60 s")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    import signal

    proc.send_signal(signal.SIGTERM)
    # generous: under a loaded CI machine a PostgreSQL-backed stop once took over 30 s
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out, err


@pytest.mark.slow
def test_entrypoint_with_the_real_davpack(repo: Any, tmp_path: Path) -> None:
    from server.services import authz, people

    secret = tmp_path / "admin_password"
    secret.write_text("container secret\n", encoding="utf-8")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "DAVPACK_DATABASE_URL": repo.config.database_url,
        "DAVPACK_STORE_PATH": str(repo.config.path("store.path")),
        "DAVPACK_STAGING_DIR": str(tmp_path / "staging"),
        "DAVPACK_PORT": str(_free_port()),
        "DAVPACK_ADMIN_EMAIL": "boss@example.org",
        "DAVPACK_ADMIN_PASSWORD_FILE": str(secret),
        "DAVPACK_DB_RETRY_DELAY": "0.2",
    }
    proc, _url = _start(env)
    done = subprocess.run([sys.executable, "-c", healthcheck_script()],
                          env={"DAVPACK_PORT": env["DAVPACK_PORT"]}, capture_output=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    out, err = _stop(proc)
    assert "created administrator boss@example.org" in err
    assert f"davpack serving http://0.0.0.0:{env['DAVPACK_PORT']}/" in out
    assert "davpack stopped" in err
    with repo.context(write=False) as ctx:
        boss = people.authenticate(ctx, "boss@example.org", "container secret")
        assert boss is not None and authz.is_admin(ctx, boss)

    # a restart finds the administrator there and leaves the password alone
    secret.write_text("another secret\n", encoding="utf-8")
    env["DAVPACK_PORT"] = str(_free_port())
    proc, _url = _start(env)
    _out, err = _stop(proc)
    assert "boss@example.org already exists; left unchanged" in err
    with repo.context(write=False) as ctx:
        assert people.authenticate(ctx, "boss@example.org", "container secret") is not None
