"""Secrets (passwords, tokens) masked in every text regtune writes or prints."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regtune.tracking.masking import mask_secrets


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://bob:s3cret@host/db", "postgresql://bob:***@host/db"),
        ("postgresql://bob:s3cret@host:5432/db", "postgresql://bob:***@host:5432/db"),
        (
            "postgresql+psycopg://bob:s3cret@db.example.com/optuna",
            "postgresql+psycopg://bob:***@db.example.com/optuna",
        ),
        ("http://user:pw@host", "http://user:***@host"),
        ("https://user:p@ss/w0rd@host:443/api?x=1", "https://user:***@host:443/api?x=1"),
        ("postgresql://bob:pa/ss@host/db", "postgresql://bob:***@host/db"),
        ("mysql://:tok@h", "mysql://:***@h"),
    ],
)
def test_mask_secrets_hides_url_passwords(url: str, masked: str) -> None:
    assert mask_secrets(url) == masked
    assert (
        mask_secrets(f"storage='{url}' and again {url}.")
        == f"storage='{masked}' and again {masked}."
    )


def test_mask_secrets_leaves_urls_without_passwords_alone() -> None:
    text = (
        "sqlite:///mlflow.db http://localhost:5000/#/runs bob@example.com postgresql://bob@host/db"
    )
    assert mask_secrets(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [  # issue 11, item 10: each of these leaked before
        ("postgresql://bob@h/db?password=s3cret", "postgresql://bob@h/db?password=***"),
        ("postgresql://h/db?sslmode=require&PASSWORD=a%20b&x=1", "postgresql://h/db?sslmode=require&PASSWORD=***&x=1"),
        ("postgresql://bob:it's@h/db", "postgresql://bob:***@h/db"),
        ('postgresql://bob:say "hi"@h/db', "postgresql://bob:***@h/db"),
        ("postgresql://bob:two words@h:5432/db", "postgresql://bob:***@h:5432/db"),
        ("postgresql://bob:12/a b@h/db", "postgresql://bob:***@h/db"),
        ("host=h user=bob password=s3cret dbname=x", "host=h user=bob password=*** dbname=x"),
        ("host=h password='it\\'s two' dbname=x", "host=h password=*** dbname=x"),
        ("PGPASSWORD=s3cret regtune tune", "PGPASSWORD=*** regtune tune"),
        ("mlflow server --db-password=s3cret", "mlflow server --db-password=***"),
        ("postgresql://h/db?pass%77ord=s3cret", "postgresql://h/db?pass%77ord=***"),  # SQLAlchemy decodes keys
        ("https://ghp_t0ken@mlflow.example.com", "https://***@mlflow.example.com"),
        ("https://alice:p@ss@mlflow.example.com:5000", "https://alice:***@mlflow.example.com:5000"),
        ("mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Du%3BPWD%3Ds3cr%3BServer%3Dh",
         "mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Du%3BPWD%3D***%3BServer%3Dh"),
        ("cannot reach storage 'postgresql://bob:it\\'s \"x\"@h/db': refused",
         "cannot reach storage 'postgresql://bob:***@h/db': refused"),
        ("storage \"postgresql://h/db?password=it's me\" failed", "storage \"postgresql://h/db?password=***\" failed"),
    ],
)
def test_mask_secrets_hides_every_credential_form(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked
    assert mask_secrets(masked) == masked


# Passwords a user may choose: anything printable, quotes, spaces and URL delimiters included.
_PASSWORDS = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=24)


def _credential_forms(password: str) -> list[tuple[str, str]]:
    """(URL or DSN carrying ``password``, what it must mask to), in every form regtune's users can
    hand to SQLAlchemy, psycopg/libpq or MLflow's HTTP client."""
    encoded = quote(password, safe="")
    libpq = password.replace("\\", "\\\\").replace("'", "\\'")
    forms = [
        (f"postgresql+psycopg://bob:{encoded}@db.example.com:5432/optuna",
         "postgresql+psycopg://bob:***@db.example.com:5432/optuna"),
        (f"postgresql+psycopg://bob@db.example.com/optuna?sslmode=require&password={quote_plus(password)}&x=1",
         "postgresql+psycopg://bob@db.example.com/optuna?sslmode=require&password=***&x=1"),
        (f"host=db.example.com user=bob password='{libpq}' dbname=optuna",
         "host=db.example.com user=bob password=*** dbname=optuna"),
        (f"https://alice:{encoded}@mlflow.example.com:5000", "https://alice:***@mlflow.example.com:5000"),
    ]
    if "@" not in password:  # SQLAlchemy takes any raw password but one with '@'
        forms.append((f"mysql+pymysql://bob:{password}@db/optuna", "mysql+pymysql://bob:***@db/optuna"))
    if not set("/?#") & set(password) and password.strip() == password and " " not in password:
        forms.append((f"http://alice:{password}@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"))
    return forms


@settings(max_examples=300, deadline=None)
@given(password=_PASSWORDS)
def test_mask_secrets_hides_generated_passwords_in_every_form(password: str) -> None:
    from sqlalchemy.engine import make_url

    if "@" not in password and "%" not in password:  # the raw form is one SQLAlchemy accepts
        assert make_url(f"mysql+pymysql://bob:{password}@db/optuna").password == password
    for url, masked in _credential_forms(password):
        assert mask_secrets(url) == masked, url  # a param or tag value, a URL printed alone
        if "://" in url:  # regtune's messages show a URL with repr
            quoted = repr(url)
            assert mask_secrets(f"storage {quoted} cannot be used") == f"storage {quoted[0]}{masked}{quoted[0]} cannot be used"
        if "://" not in url or not any(c.isspace() or c in "'\"" for c in password):
            assert mask_secrets(f"cannot reach {url}: refused") == f"cannot reach {masked}: refused"
