#!/bin/sh
# davpack container entry point (POSIX sh).
#
# 1. Create or migrate the schema with `davpack db upgrade`.  When DAVPACK_DATABASE_URL names
#    PostgreSQL the database may still be starting: retry up to DAVPACK_DB_RETRIES times,
#    DAVPACK_DB_RETRY_DELAY seconds apart.  Any other database gets one attempt.
# 2. When DAVPACK_ADMIN_EMAIL and DAVPACK_ADMIN_PASSWORD_FILE are both set, create that
#    administrator unless a person with that e-mail already exists (then nothing changes).
# 3. Replace this shell with the server (`davpack serve`), so that it is PID 1 and gets
#    SIGTERM directly.  Arguments, if any, run `davpack ARGS...` instead of the server.
set -eu

retries=${DAVPACK_DB_RETRIES:-30}
delay=${DAVPACK_DB_RETRY_DELAY:-2}

log() {
    printf 'davpack-entrypoint: %s\n' "$*" >&2
}

case ${DAVPACK_DATABASE_URL:-} in
    postgres*) attempts=$retries ;;
    *) attempts=1 ;;
esac

attempt=1
until davpack db upgrade; do
    if [ "$attempt" -ge "$attempts" ]; then
        log "database not ready after $attempt attempt(s); giving up"
        exit 1
    fi
    log "database not ready (attempt $attempt of $attempts); retrying in ${delay}s"
    attempt=$((attempt + 1))
    sleep "$delay"
done

if [ -n "${DAVPACK_ADMIN_EMAIL:-}" ] && [ -n "${DAVPACK_ADMIN_PASSWORD_FILE:-}" ]; then
    if [ ! -r "$DAVPACK_ADMIN_PASSWORD_FILE" ]; then
        log "cannot read DAVPACK_ADMIN_PASSWORD_FILE ($DAVPACK_ADMIN_PASSWORD_FILE)"
        exit 1
    fi
    if output=$(davpack user add "$DAVPACK_ADMIN_EMAIL" --admin --password-stdin \
            < "$DAVPACK_ADMIN_PASSWORD_FILE" 2>&1); then
        log "created administrator $DAVPACK_ADMIN_EMAIL"
    else
        case $output in
            *"already exists"*)
                log "a person with e-mail $DAVPACK_ADMIN_EMAIL already exists; left unchanged" ;;
            *)
                printf '%s\n' "$output" >&2
                log "could not create administrator $DAVPACK_ADMIN_EMAIL"
                exit 1 ;;
        esac
    fi
fi

if [ "$#" -gt 0 ]; then
    exec davpack "$@"
fi
exec davpack serve --host 0.0.0.0 --port "${DAVPACK_PORT:-8080}"
