#!/usr/bin/env bash
# Creates one database and one login role per Tongban service.
#
# Run once by the postgres image on first start (empty data directory), from
# /docker-entrypoint-initdb.d. Reads:
#
#   TONGBAN_DATABASES       space-separated service names, e.g. "org user auth"
#   <NAME>_DB_PASSWORD      password of each service's role, e.g. ORG_DB_PASSWORD
#
# Each service gets a role and a database with the service's name; the role
# owns its database, and no other role (except the superuser) may connect to it.
# Safe to run again: existing roles get their password reset, existing
# databases are left as they are.
set -Eeuo pipefail

databases="${TONGBAN_DATABASES:-}"
if [[ -z "${databases// /}" ]]; then
  echo "01-databases.sh: TONGBAN_DATABASES is empty; nothing to create" >&2
  exit 1
fi

psql_admin=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}")

for name in ${databases}; do
  if [[ ! "${name}" =~ ^[a-z][a-z0-9_]*$ ]]; then
    echo "01-databases.sh: invalid database name '${name}' (use lowercase letters, digits, _)" >&2
    exit 1
  fi
  password_var="$(tr '[:lower:]' '[:upper:]' <<<"${name}")_DB_PASSWORD"
  password="${!password_var:-}"
  if [[ -z "${password}" ]]; then
    echo "01-databases.sh: ${password_var} is not set; refusing to create role '${name}' without a password" >&2
    exit 1
  fi

  echo "01-databases.sh: database and role '${name}'"
  "${psql_admin[@]}" -v name="${name}" -v password="${password}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name')
\gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'name', :'password')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')
\gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name')
\gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'name', :'name')
\gexec
SQL
done
