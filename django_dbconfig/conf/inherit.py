"""One alias taking the settings of another: a replica from its primary, an alias `like=` another.

`inherit()` is a pure function over tagged values. The child's own keys win,
whatever layer set them; the parent's keys fill the rest, each shown with where
the parent got it ("inherited from default: dbconfig.json: databases.default.sslmode").
User and password travel as a pair: a child that names another user does not
get the parent's password.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django_dbconfig.conf.layer import Origin, Value

# What a replica does not take from its primary: where the server is and what only
# the primary does. target_session_attrs and load_balance_hosts describe the
# primary's list of hosts; read_only is true for a replica unless it says otherwise.
NOT_INHERITED_BY_REPLICAS = frozenset(
    {
        "url",
        "host",
        "port",
        "replica_of",
        "pool",
        "migrate",
        "read_only",
        "target_session_attrs",
        "load_balance_hosts",
        "test",
    }
)
REPLICA_READ_ONLY = Origin("default", "a replica is read-only")


def inherit(
    parent: Mapping[str, Value],
    own: Mapping[str, Value],
    *,
    parent_alias: str,
    not_inherited: Iterable[str] = (),
) -> dict[str, Value]:
    """The child's values completed with the parent's.

    `parent` and `own` map keys (with "options.x"-style sub-keys) to tagged values.
    The child's own values win, except those it got from `defaults` (set for every
    alias): the parent's own value beats them. Keys named in `not_inherited`
    (a sub-key goes with its root, "options.sslmode" with "options") stay the child's.
    Inherited values are marked `inherited` and their origin names the parent.
    """
    excluded = frozenset(not_inherited)
    explicit = {key: value for key, value in own.items() if not value.from_defaults}
    result = {key: value for key, value in own.items() if value.from_defaults}
    skip_pair = _pair_kept_by_child(parent, explicit)
    for key, value in parent.items():
        root = key.partition(".")[0]
        if root in excluded or key in skip_pair:
            continue
        if value.from_defaults and key in result:
            continue  # the same defaults reach the child: keep its own origin
        result[key] = Value(
            value.value,
            Origin(f"inherited from {parent_alias}: {value.origin.source}", value.origin.key),
            value.rank,
            from_defaults=value.from_defaults,
            inherited=True,
        )
    result.update(explicit)
    return result


def _pair_kept_by_child(parent: Mapping[str, Value], explicit: Mapping[str, Value]) -> frozenset[str]:
    """The credential keys the child must not take from the parent.

    A child naming a user other than the parent's takes neither user nor password;
    one naming the same user (or only a password) keeps what it set and takes the rest,
    except the parent's password_provider when it set a password.
    """
    user = explicit.get("user")
    if user is not None and ("user" not in parent or parent["user"].value != user.value):
        return frozenset({"user", "password"})
    if "password" in explicit:
        # A password of its own replaces the parent's way of getting one.
        return frozenset({"password_provider"})
    return frozenset()


def with_replica_defaults(values: Mapping[str, Value]) -> dict[str, Value]:
    """A replica is read-only unless it says so itself (not through `defaults`)."""
    result = dict(values)
    current = result.get("read_only")
    if current is None or current.from_defaults or current.inherited:
        # Weak, like a default: a backend without read-only mode (SQLite) ignores it.
        result["read_only"] = Value(True, REPLICA_READ_ONLY, 0, from_defaults=True)
    return result
