"""Built-in password providers, for `password_provider` (a public path).

`aws_rds_iam` gives an AWS RDS IAM authentication token. How providers are called,
and how their secrets are cached, is in `django_dbconfig.backends.base.credentials`.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from typing import Any

from django_dbconfig.backends.base.credentials import PasswordProviderError

__all__ = ["PasswordProviderError", "aws_rds_iam"]

# How long an RDS IAM token is valid: fixed by AWS.
RDS_IAM_TOKEN_LIFETIME_S = 900


def aws_rds_iam(alias: str, settings: Mapping[str, Any]) -> tuple[str, datetime.datetime]:
    """An RDS IAM authentication token for the alias's host, port and user (valid 15 minutes).

    botocore signs the token locally with the credentials boto3 finds (environment,
    profile, instance role): no network call. The region is boto3's, else the one in
    an RDS host name (`*.REGION.rds.amazonaws.com`). Use it with `sslmode` at least
    `require`: RDS accepts IAM tokens over TLS only.
    """
    host, user = str(settings.get("HOST") or ""), str(settings.get("USER") or "")
    port = int(settings.get("PORT") or 5432)
    if not host or not user:
        raise PasswordProviderError(
            f'aws_rds_iam for alias "{alias}" needs a host and a user: set host and user for it.'
        )
    client = _rds_client(_region(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    token = client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
    return str(token), now + datetime.timedelta(seconds=RDS_IAM_TOKEN_LIFETIME_S)


def _region(host: str) -> str | None:
    parts = host.split(".")
    if len(parts) >= 5 and parts[-3:] == ["rds", "amazonaws", "com"]:
        return parts[-4]
    return None


@functools.lru_cache(maxsize=8)
def _rds_client(host_region: str | None) -> Any:
    try:
        import boto3  # optional (the aws extra)
    except ImportError:
        raise PasswordProviderError(
            'django_dbconfig.credentials.aws_rds_iam needs boto3: install "django-dbconfig[aws]".'
        ) from None
    session = boto3.session.Session()
    region = session.region_name or host_region
    if region is None:
        raise PasswordProviderError(
            "aws_rds_iam cannot tell the AWS region: set AWS_REGION (or a profile's region), "
            "or use the RDS host name (*.REGION.rds.amazonaws.com)."
        )
    return session.client("rds", region_name=region)
