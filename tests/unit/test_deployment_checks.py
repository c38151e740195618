"""What the compose stack checks before it starts: secrets (Fernet key, JWT secret, passwords) and Airflow's users."""

import json
import os
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from mlscale.deployment import (CHECKED_PASSWORDS, FERNET_KEY, JWT_SECRET, DeploymentError, airflow_passwords,
                                check_secrets, write_airflow_passwords)

FERNET, JWT, WH = FERNET_KEY[0], JWT_SECRET[0], CHECKED_PASSWORDS["WAREHOUSE_PASSWORD"]  # the variables read
GOOD = {FERNET: Fernet.generate_key().decode(), JWT: "x7" * 16, WH: "a-long-warehouse-password"}
NAMES = ("AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "WAREHOUSE_PASSWORD")  # as .env names them, in check order
USERS = "admin:admin,approver:user,analyst:viewer"
PASSWORDS = "admin:first-long-password,approver:second-long-password,analyst:third-long-password"  # pragma: allowlist secret


def test_good_secrets_pass():
    check_secrets(GOOD, CHECKED_PASSWORDS)


@pytest.mark.parametrize(("change", "named"), [
    ({FERNET: ""}, "AIRFLOW_FERNET_KEY is not a Fernet key"),
    ({FERNET: "not-base64-and-too-short"}, "AIRFLOW_FERNET_KEY is not a Fernet key"),
    ({JWT: "change-me-to-a-long-random-string"}, "AIRFLOW_JWT_SECRET must be"),
    ({JWT: "short"}, "AIRFLOW_JWT_SECRET must be"),
    ({WH: "change-me"}, "WAREHOUSE_PASSWORD must be set"),
    ({WH: "short"}, "WAREHOUSE_PASSWORD must be set"),
])
def test_a_missing_or_weak_secret_refuses_to_start_naming_the_env_variable(change, named):
    with pytest.raises(DeploymentError, match="refusing to start") as exc:
        check_secrets({**GOOD, **change}, CHECKED_PASSWORDS)
    assert named in str(exc.value)
    assert [name for name in NAMES if name in str(exc.value)] == [named.split(" ")[0]]  # only that one problem


def test_every_problem_is_named_at_once_and_no_secret_is_printed():
    with pytest.raises(DeploymentError) as exc:
        check_secrets({JWT: "short-jwt"}, CHECKED_PASSWORDS)
    message = str(exc.value)
    assert sorted(NAMES, key=message.find) == list(NAMES) and min(map(message.find, NAMES)) > 0
    assert "short-jwt" not in message


def test_airflow_passwords_come_from_the_env_for_every_user():
    assert airflow_passwords(USERS, PASSWORDS) == {"admin": "first-long-password", "approver": "second-long-password",
                                                   "analyst": "third-long-password"}


@pytest.mark.parametrize(("users", "passwords", "problem"), [
    (USERS, "admin:first-long-password,approver:second-long-password", "user 'analyst' has no password"),
    (USERS, PASSWORDS.replace("first-long-password", "admin"), "the password of 'admin' is a placeholder"),
    (USERS, PASSWORDS.replace("third-long-password", "short"), "the password of 'analyst' is a placeholder"),
    (USERS + ",root:superuser", PASSWORDS + ",root:fourth-long-password", "user 'root' has role 'superuser'"),
    (USERS, PASSWORDS + ",ghost:fifth-long-password", "names 'ghost', who is not in AIRFLOW_USERS"),
    (USERS, "admin first-long-password", "AIRFLOW_PASSWORDS: 'admin first-long-password'"),  # pragma: allowlist secret
])
def test_a_user_without_a_good_password_or_a_known_role_is_refused(users, passwords, problem):
    with pytest.raises(DeploymentError) as exc:
        airflow_passwords(users, passwords)
    assert problem in str(exc.value)


def test_the_passwords_file_is_written_for_the_owner_only(tmp_path):
    path = tmp_path / "airflow" / "passwords.json"
    path.parent.mkdir()
    path.write_text('{"admin": "an-old-generated-one"}')  # pragma: allowlist secret
    path.chmod(0o644)
    write_airflow_passwords({"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS, "AIRFLOW_PASSWORDS": PASSWORDS}, path)
    assert json.loads(path.read_text())["admin"] == "first-long-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_deploy_check_exits_1_with_one_line_naming_what_to_set():
    """As airflow-init runs it: the warehouse password comes in the warehouse role's DSN, as compose sets it."""
    env = {**os.environ, FERNET: "", JWT: GOOD[JWT],
           "MLSCALE_PG_DSN": f"postgresql://wh:{GOOD[WH]}@postgres:5432/warehouse"}  # pragma: allowlist secret
    out = subprocess.run([sys.executable, "-m", "mlscale.cli", "deploy-check"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1, out.stdout
    assert out.stderr.strip().splitlines() == [
        "mlscale deploy-check: DeploymentError: refusing to start: AIRFLOW_FERNET_KEY is not a Fernet key (32 url-safe "
        "base64-encoded bytes), made by python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'"]
    env[FERNET] = GOOD[FERNET]
    out = subprocess.run([sys.executable, "-m", "mlscale.cli", "deploy-check"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stdout.startswith("secrets: ")) == (0, True), out.stderr
