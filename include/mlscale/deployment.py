"""What the docker-compose stack checks and creates before its services start (README, *Deployment*).

- `check_secrets`: `airflow-init` refuses to migrate, and so every Airflow service refuses to start, without a
  valid Fernet key (Airflow encrypts Connections and Variables with it), a JWT secret of 32 characters or more
  (it signs every UI and task token) and passwords that are set and are not the examples' placeholders.
- `airflow_passwords`: Airflow's simple auth manager reads its users and roles from
  `AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS` and their passwords from a JSON file, which it fills with generated
  passwords when a user is missing. The api-server writes that file from `.env` (`AIRFLOW_PASSWORDS`) before it
  starts, so every user's password is the operator's and nobody logs in as `admin:admin`.
- `ensure_mlflow_account`: the pipeline's account on MLflow's basic-auth app, created (or its password set) by
  the MLflow admin. It creates the registered models and so holds MANAGE on them; everyone else reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

ROLES = ("viewer", "user", "op", "admin")  # Airflow's simple auth manager, least to most
MIN_PASSWORD = 12
MIN_JWT_SECRET = 32
# Values of .env.example and well-known defaults: refused wherever a secret is expected.
PLACEHOLDERS = {"", "admin", "airflow", "mlflow", "password", "postgres", "secret", "change-me", "changeme",
                "change-me-to-a-long-random-string"}
# The variables a container reads, with the .env variable an operator sets for each.
FERNET_KEY = ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY")
JWT_SECRET = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET")
# Passwords airflow-init checks: the .env name, the variable the container reads (names, not values).
CHECKED_PASSWORDS = {"WAREHOUSE_PASSWORD": "MLSCALE_WH_PASSWORD"}  # pragma: allowlist secret


class DeploymentError(ValueError):
    """A secret is missing or too weak: the message names the .env variable and how to make a good one."""


def weak(value: str | None, minimum: int = MIN_PASSWORD) -> bool:
    return value is None or value.strip().lower() in PLACEHOLDERS or len(value) < minimum


def check_secrets(env: Mapping[str, str], passwords: Mapping[str, str] = {}) -> None:
    """Raise `DeploymentError` listing every problem: the Fernet key, the JWT secret, and `passwords` (.env name
    to the variable the container reads it from) that are unset, placeholders or shorter than 12 characters."""
    from cryptography.fernet import Fernet

    problems = []
    variable, name = FERNET_KEY
    try:
        Fernet(env.get(variable, "").encode())
    except ValueError:
        problems.append(f"{name} is not a Fernet key (32 url-safe base64-encoded bytes), made by "
                        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
    variable, name = JWT_SECRET
    if weak(env.get(variable), MIN_JWT_SECRET):
        problems.append(f"{name} must be a random string of {MIN_JWT_SECRET} characters or more, made by "
                        "openssl rand -hex 32")
    for name, variable in passwords.items():
        if weak(env.get(variable)):
            problems.append(f"{name} must be set to a password of {MIN_PASSWORD} characters or more, not a "
                            "placeholder")
    if problems:
        raise DeploymentError("refusing to start: " + "; ".join(problems))


def airflow_passwords(users: str, passwords: str) -> dict[str, str]:
    """{user: password} for the simple auth manager from `users` ("name:role,...", its own setting) and
    `passwords` ("name:password,..." from .env; a password holds no comma). Every user needs a role of ROLES
    and a password that is not weak; a password for a user who is not configured is refused too."""
    roles = dict(_pairs(users, "AIRFLOW_USERS"))
    given = dict(_pairs(passwords, "AIRFLOW_PASSWORDS"))
    problems = [f"user {u!r} has role {r!r}; roles are {', '.join(ROLES)}" for u, r in roles.items()
                if r.lower() not in ROLES]
    problems += [f"user {u!r} has no password in AIRFLOW_PASSWORDS" for u in roles if u not in given]
    problems += [f"the password of {u!r} is a placeholder or shorter than {MIN_PASSWORD} characters"
                 for u in roles if u in given and (weak(given[u]) or given[u] == u)]
    problems += [f"AIRFLOW_PASSWORDS names {u!r}, who is not in AIRFLOW_USERS" for u in given if u not in roles]
    if problems:
        raise DeploymentError("Airflow users: " + "; ".join(problems))
    return {u: given[u] for u in roles}


def write_airflow_passwords(env: Mapping[str, str], path: Path) -> Path:
    """Write the simple auth manager's passwords file (owner-only) from the users and AIRFLOW_PASSWORDS."""
    passwords = airflow_passwords(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ""),
                                  env.get("AIRFLOW_PASSWORDS", ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(passwords, out)
    return path


def ensure_mlflow_account(tracking_uri: str, username: str, password: str) -> str:
    """Create the MLflow account `username` with `password`, or set its password if it exists; "created" or
    "updated". Runs as MLflow's admin: the credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    if weak(password):
        raise DeploymentError(f"the password of MLflow's {username!r} account is a placeholder or shorter than "
                              f"{MIN_PASSWORD} characters")
    client = get_app_client("basic-auth", tracking_uri=tracking_uri)
    try:
        client.get_user(username)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_user(username, password)
        return "created"
    client.update_user_password(username, password)
    return "updated"


def _pairs(text: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise DeploymentError(f"{name}: {item.split(':')[0]!r}... is not name:value")
        pairs.append((key, value))
    return pairs
