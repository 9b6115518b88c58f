"""libpq's TLS options in a PostgreSQL URL, mapped onto asyncpg or psycopg at construction."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskflow import ConfigurationError, TaskManager
from taskflow.settings import ENV_DATABASE_URL, resolve_database_url

BASE = "postgresql://u@db.example/app"
PSYCOPG = "postgresql+psycopg://u@db.example/app"


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CA file found by libpq's rules unless a test puts one there."""
    for name in (ENV_DATABASE_URL, "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLMODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _pem_pair(tmp_path: Path, name: str, password: bytes | None = None) -> tuple[Path, Path]:
    """A self-signed certificate and its key as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    return _pem_pair(tmp_path, "ca")[0]


# -- asyncpg: the ssl argument ----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "ssl_argument"),
    [("disable", False), ("allow", "prefer"), ("prefer", "prefer"), ("require", "require")],
)
def test_modes_without_files_map_onto_asyncpgs_own(mode: str, ssl_argument: object) -> None:
    target = resolve_database_url(f"{BASE}?sslmode={mode}")
    assert target.connect_args == {"ssl": ssl_argument}
    assert dict(target.url.query) == {}


def test_no_sslmode_leaves_asyncpgs_default() -> None:
    assert resolve_database_url(BASE).connect_args == {}


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verifying_without_a_ca_file_fails_at_construction(mode: str) -> None:
    with pytest.raises(ConfigurationError, match=r"add sslrootcert=/path/to/ca\.pem"):
        TaskManager(database_url=f"{BASE}?sslmode={mode}")


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verifying_finds_libpqs_ca_file(
    mode: str, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", str(ca))
    assert resolve_database_url(f"{BASE}?sslmode={mode}").connect_args == {"ssl": mode}


@pytest.mark.parametrize(
    ("mode", "hostname_checked"),
    [("require", False), ("verify-ca", False), ("verify-full", True)],
)
def test_a_ca_file_makes_a_verifying_context(mode: str, hostname_checked: bool, ca: Path) -> None:
    target = resolve_database_url(f"{BASE}?sslmode={mode}&sslrootcert={ca}")
    context = target.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED  # libpq: require with a CA checks the chain
    assert context.check_hostname is hostname_checked
    assert len(context.get_ca_certs()) == 1


def test_optional_tls_ignores_the_ca_file_as_libpq_does(ca: Path) -> None:
    assert resolve_database_url(f"{BASE}?sslmode=prefer&sslrootcert={ca}").connect_args == {
        "ssl": "prefer"
    }
    assert resolve_database_url(f"{BASE}?sslmode=disable&sslrootcert={ca}").connect_args == {
        "ssl": False
    }


def test_client_certificate_goes_into_the_context(tmp_path: Path, ca: Path) -> None:
    cert, key = _pem_pair(tmp_path, "client", password=b"s3cret")
    target = resolve_database_url(
        f"{BASE}?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"
        "&sslpassword=s3cret"
    )
    assert isinstance(target.connect_args["ssl"], ssl.SSLContext)
    with pytest.raises(ConfigurationError, match="sslpassword must open an encrypted key"):
        resolve_database_url(
            f"{BASE}?sslmode=require&sslcert={cert}&sslkey={key}&sslpassword=wrong"
        )


def test_client_certificate_needs_required_tls_on_asyncpg(tmp_path: Path) -> None:
    cert, key = _pem_pair(tmp_path, "client")
    with pytest.raises(ConfigurationError, match="use sslmode=require"):
        resolve_database_url(f"{BASE}?sslmode=prefer&sslcert={cert}&sslkey={key}")
    with pytest.raises(ConfigurationError, match="sslkey needs sslcert"):
        resolve_database_url(f"{BASE}?sslmode=require&sslkey={key}")


def test_system_ca_store_needs_verify_full() -> None:
    target = resolve_database_url(f"{BASE}?sslmode=verify-full&sslrootcert=system")
    context = target.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    with pytest.raises(ConfigurationError, match="needs sslmode=verify-full"):
        resolve_database_url(f"{BASE}?sslmode=require&sslrootcert=system")


# -- both drivers: checked at construction ----------------------------------------------


@pytest.mark.parametrize("base", [BASE, PSYCOPG])
@pytest.mark.parametrize("option", ["sslrootcert", "sslcert", "sslkey"])
def test_an_unreadable_file_fails_at_construction(base: str, option: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=rf"{option}=.*cannot be read"):
        TaskManager(database_url=f"{base}?sslmode=verify-full&{option}={tmp_path}/missing.pem")


@pytest.mark.parametrize("base", [BASE, PSYCOPG])
def test_an_unknown_sslmode_fails_at_construction(base: str) -> None:
    with pytest.raises(ConfigurationError, match="use one of disable, allow, prefer, require"):
        TaskManager(database_url=f"{base}?sslmode=on")


# -- psycopg: libpq takes the options as they are --------------------------------------


def test_psycopg_gets_libpqs_options_as_written(tmp_path: Path, ca: Path) -> None:
    cert, key = _pem_pair(tmp_path, "client")
    target = resolve_database_url(
        f"{PSYCOPG}?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"
        "&sslpassword=pw&connect_timeout=7&application_name=billing&keepalives=1"
    )
    assert target.url.drivername == "postgresql+psycopg"
    assert dict(target.url.query) == {}
    assert target.connect_args == {
        "sslmode": "verify-full",
        "sslrootcert": str(ca),
        "sslcert": str(cert),
        "sslkey": str(key),
        "sslpassword": "pw",
        "connect_timeout": 7,
        "application_name": "billing",
        "keepalives": "1",
    }


def test_psycopg_refuses_what_libpq_does_not_know() -> None:
    with pytest.raises(ConfigurationError, match='invalid connection option "statement_cache"'):
        TaskManager(database_url=f"{PSYCOPG}?statement_cache=10")


def test_asyncpg_names_psycopg_for_libpq_options_it_lacks() -> None:
    with pytest.raises(ConfigurationError, match=r"postgresql\+psycopg://"):
        TaskManager(database_url=f"{BASE}?keepalives=1")


# -- the LISTEN connection, opened outside the pool, gets the same options --------------


def test_listen_connection_options_per_driver() -> None:
    from taskflow.repository.sql.wakeups import PostgresListener

    several = "?host=a:5432&host=b:5433"
    psycopg = resolve_database_url(f"postgresql+psycopg://u:pw@/app{several}&sslmode=require")
    listener = PostgresListener(psycopg.url, lambda: None, connect_args=psycopg.connect_args)
    assert listener._connect == {
        "user": "u",
        "password": "pw",
        "dbname": "app",
        "host": "a,b",  # libpq's lists
        "port": "5432,5433",
        "sslmode": "require",
    }
    asyncpg = resolve_database_url(f"postgresql://u:pw@/app{several}&sslmode=require")
    listener = PostgresListener(asyncpg.url, lambda: None, connect_args=asyncpg.connect_args)
    assert listener._connect == {
        "user": "u",
        "password": "pw",
        "database": "app",
        "host": ["a:5432", "b:5433"],
        "ssl": "require",
    }
