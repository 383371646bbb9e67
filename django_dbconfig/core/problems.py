"""Problem ids and their hints, shared by the system checks and the live probes.

Every id is a constant here with its hint, an instruction; docs/checks.md lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping

from django_dbconfig.core.report import Problem

# Static: configuration, no connection.
E001 = "dbconfig.E001"
E002 = "dbconfig.E002"
E003 = "dbconfig.E003"
W001 = "dbconfig.W001"
W002 = "dbconfig.W002"
W003 = "dbconfig.W003"
W004 = "dbconfig.W004"
W005 = "dbconfig.W005"
W006 = "dbconfig.W006"
W011 = "dbconfig.W011"
W012 = "dbconfig.W012"
W013 = "dbconfig.W013"
W014 = "dbconfig.W014"
# Live: what dbcheck finds on the servers.
E101 = "dbconfig.E101"
E102 = "dbconfig.E102"
E103 = "dbconfig.E103"
E104 = "dbconfig.E104"
E105 = "dbconfig.E105"
E106 = "dbconfig.E106"
E107 = "dbconfig.E107"
E108 = "dbconfig.E108"
E109 = "dbconfig.E109"
E110 = "dbconfig.E110"
E111 = "dbconfig.E111"
E115 = "dbconfig.E115"
E116 = "dbconfig.E116"
E117 = "dbconfig.E117"
W101 = "dbconfig.W101"
W102 = "dbconfig.W102"
W103 = "dbconfig.W103"
W104 = "dbconfig.W104"
# Live, replicas: standby and lag.
E120 = "dbconfig.E120"
E121 = "dbconfig.E121"
W120 = "dbconfig.W120"
# Live, Galera clusters.
E170 = "dbconfig.E170"
E171 = "dbconfig.E171"
W170 = "dbconfig.W170"
W171 = "dbconfig.W171"
# Routing: models and aliases.
E201 = "dbconfig.E201"
E202 = "dbconfig.E202"
E203 = "dbconfig.E203"
W201 = "dbconfig.W201"

HINTS: Mapping[str, str] = {
    E001: 'Point the route at an alias of DATABASES, or add the alias "{alias}".',
    E002: "Install the driver: {install}",
    E003: 'Install the pool: pip install "django-dbconfig[pool]" (psycopg_pool), or remove pool '
    'from "{alias}".',
    W001: 'Set conn_max_age for "{alias}" to a number of seconds (e.g. 60) instead of null.',
    W002: 'Set sslmode for "{alias}" to "verify-full" (with sslrootcert), or at least "require".',
    W003: "Run: chmod 600 {path}",
    W004: "Add .secrets/ to the .gitignore of {path}, and remove the file from git if it is tracked "
    "(git rm --cached).",
    W005: 'Rename the schema, or quote it everywhere in your own SQL; "{alias}" search_path '
    "is quoted by django-dbconfig.",
    W006: "{fix}",
    W011: 'Use either pool or pooler for "{alias}": remove pool and let the external pooler pool '
    "(conn_max_age keeps one connection per thread), or keep pool and connect to the server directly.",
    W012: 'Remove engine for "{alias}" to have django-dbconfig\'s engine serve it with every feature '
    '(for GeoDjango: engine "postgis" or "mysql_gis"), or remove the keys named above; once the loss '
    'is accepted, add "dbconfig.W012" to SILENCED_SYSTEM_CHECKS.',
    W014: "Remove options.{option} from {source}, or move it where the {owner} backend is chosen for "
    '"{alias}": it is ignored on {backend}.',
    W013: "Set DATABASE_URL (or DBCONFIG_DEFAULT_URL, or a default alias in dbconfig.json) where the "
    "project is deployed, or set DBCONFIG_ENV to the profile that describes it.",
    E117: 'Remove options.{option} from "{alias}" (or correct its name): the driver does not know it. '
    "It is a driver option, not a problem with host, port, user or password.",
    E101: 'Check host, port, user and password of "{alias}" and that the server accepts '
    "connections from this machine.",
    E102: 'The server of "{alias}" accepted nothing within the timeout: check host and port, '
    "firewalls, and connect_timeout (or --timeout).",
    E103: 'Enable TLS on the server of "{alias}", or connect through a proxy that terminates it; '
    "never lower sslmode to hide this.",
    E104: 'Give "{alias}" an sslrootcert the server certificate chains to, make sure no options '
    "override sslmode, and use a driver that honours it.",
    E105: 'Set sslmode for "{alias}" to "require" or stronger and enable TLS on its server.',
    E106: "Create the schema (manage.py dbcheck --create-schemas --database {alias}) or remove it "
    'from the search_path of "{alias}".',
    E107: 'GRANT USAGE ON SCHEMA <schema> TO the user of "{alias}", or remove it from search_path.',
    E108: "Create the schema as a user allowed to (GRANT CREATE ON DATABASE), or remove it from "
    'the search_path of "{alias}".',
    E109: 'Something overrides {setting} of "{alias}": look for options, a connection pooler '
    "that drops startup parameters, or ALTER ROLE/DATABASE ... SET on the server.",
    E110: 'Check read_only of "{alias}" and that no options or pooler override it; a replica '
    "alias is read-only by nature.",
    E111: 'Check that the user of "{alias}" may read the server status views used by dbcheck.',
    W101: 'Set sslmode for "{alias}" to "require" or stronger to make TLS mandatory.',
    W103: 'Set backend "{backend}" for "{alias}" (or use a {backend}:// URL).',
    W102: "Run manage.py migrate --database {alias} to create it.",
    W104: "To make it read-only whatever the session does, {fix}or connect "
    '"{alias}" as a role that is no superuser, owns no schema or table of its search_path, and '
    "has only SELECT on its tables.",
    E115: 'With pooler "transaction", run manage.py dbcheck --apply-settings --database {alias}, then '
    "make the pooler reconnect its server connections (PgBouncer: RECONNECT on its admin console, or "
    'wait server_lifetime). With pooler "session", the pooler must run in session mode for "{alias}".',
    E116: 'Connect as the role of "{alias}" (a role may set its own defaults) or as a role with '
    "CREATEROLE, and check the pooler lets it through; or run the ALTER ROLE statements yourself.",
    E120: 'Point "{alias}" at a standby of {primary} (host and port), or remove its replica_of if it is '
    "meant to be a primary: reads routed there would not be a copy of {primary}.",
    E121: 'Find why the standby of "{alias}" falls behind (network, load, long queries, '
    "recovery_min_apply_delay / MASTER_DELAY), or raise its max_replica_lag.",
    W120: 'Check that replication to "{alias}" is running (pg_stat_wal_receiver; SHOW REPLICA STATUS) '
    "and that its user may read the replication status (MariaDB: SLAVE MONITOR; MySQL: REPLICATION CLIENT).",
    E170: 'Restore the network between the node of "{alias}" and the other nodes, or start the '
    "missing nodes; if no component is primary, bootstrap the most advanced node "
    "(SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'). Point \"{alias}\" at a healthy node "
    "(or a proxy that checks wsrep_ready) meanwhile.",
    E171: 'Wait until the node of "{alias}" is Synced (after a state transfer, or SET GLOBAL '
    'wsrep_desync=OFF after a backup), or point "{alias}" at a synced node (or a proxy that checks '
    "wsrep_local_state_comment).",
    W170: 'Start the missing nodes of the cluster of "{alias}" (check their error logs), or set '
    "galera_cluster_size to the number of nodes the cluster is meant to have.",
    W171: 'Point "{alias}" at a node of the Galera cluster, or remove wsrep_sync_wait and '
    "galera_cluster_size from it.",
    E201: 'Route {model} to an alias of DATABASES (DBCONFIG_ROUTES or "routes" of dbconfig.json).',
    E202: "Make your routers' allow_migrate() allow {model} on one alias only (with DatabaseRouter: "
    'route them in DBCONFIG_ROUTES or "routes" of dbconfig.json).',
    E203: "Make one router allow {model} to migrate on its own alias.",
    W201: 'Add DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"] to settings.py and route '
    'apps to their alias ("routes" of dbconfig.json), or ignore this if every alias is meant to hold '
    "every table.",
}


def problem(check_id: str, message: str, **context: str) -> Problem:
    """A Problem for one of the ids above, its hint filled in with the context."""
    hint = HINTS[check_id].format_map(_Missing(context))
    return Problem("error" if ".E" in check_id else "warning", check_id, message, hint)


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"
