"""`offhook central init`: the broker's files (password file, ACL, mosquitto.conf) and a test CA.

What the ACL says: a desk (its broker username) may publish only its own seven topics
(``offhook/v1/<site>/<desk>/{presence,inventory,state,records,alerts,settings,update_status}``) and
read only its own ``ack``, ``policy`` and ``update``; central instances read everything under
``offhook/v1`` and write only acks, policies and updates. The broker
sets each client's id to its username (``use_username_as_clientid``), so one desk cannot take
over another's session by claiming its client id. Anonymous clients are refused.

Passwords are random (32 bytes, URL-safe), written once per account into ``secrets/`` (0600)
and, hashed the way Mosquitto 2 does (PBKDF2-SHA512, ``$7$``), into the password file. Running
init again keeps every existing password, key and certificate and adds what is new.

The CA here is a test CA (10 years, no revocation): production sites use their own PKI and
give init ``--server-cert``/``--server-key``/``--ca`` instead.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from offhook.floor import schema as S

PBKDF2_ITERATIONS = 101  # Mosquitto 2.0's own default for $7$ hashes
DESK_KINDS = S.DESK_KINDS


@dataclass(frozen=True)
class Desk:
    site: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Desk:
        site, _, name = text.strip().partition("/")
        if not S.NAME.match(site) or not S.NAME.match(name):
            raise ValueError(f"desk {text!r} must be SITE/NAME (letters, digits, _ . -)")
        return cls(site, name)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash ($7$: PBKDF2-SHA512)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def acl_text(desks: list[Desk], centrals: list[str]) -> str:
    lines = ["# Written by `offhook central init`: regenerate it rather than edit it.", ""]
    for central in centrals:
        lines += [f"user {central}", f"topic read {S.PREFIX}/#"]
        lines += [f"topic write {S.PREFIX}/+/+/{kind}" for kind in S.CENTRAL_KINDS] + [""]
    for desk in desks:
        lines.append(f"user {desk.name}")
        lines += [f"topic write {S.topic(desk.site, desk.name, kind)}" for kind in DESK_KINDS]
        lines += [f"topic read {S.topic(desk.site, desk.name, kind)}" for kind in S.CENTRAL_KINDS] + [""]
    return "\n".join(lines)


def mosquitto_conf(directory: Path, *, port: int, bind: str, cert_port: int | None, log_refusals: bool) -> str:
    d = directory.resolve()
    lines = [
        "# Written by `offhook central init`. Run: mosquitto -c " + str(d / "mosquitto.conf"),
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {d / 'passwords'}",
        f"acl_file {d / 'acl'}",
        "persistence true",
        f"persistence_location {d / 'data'}/",
        # Central's in-flight backlog: states of a whole floor at once must not overflow it.
        "max_queued_messages 100000",
        "max_packet_size 1048576",
        f"log_dest file {d / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
    ]
    if log_refusals:  # Mosquitto logs an ACL refusal only at debug level; `offhook central --broker-log` counts them
        lines.append("log_type debug")
    lines += [
        "",
        f"listener {port} {bind}",
        f"certfile {d / 'server.pem'}",
        f"keyfile {d / 'server.key'}",
        f"cafile {d / 'ca.pem'}",
        "tls_version tlsv1.2",
        "use_username_as_clientid true",
    ]
    if cert_port is not None:  # desks with a client certificate: its CN is the username
        lines += [
            "",
            f"listener {cert_port} {bind}",
            f"certfile {d / 'server.pem'}",
            f"keyfile {d / 'server.key'}",
            f"cafile {d / 'ca.pem'}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
        ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_or_make_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, _key_pem(key))
    return key


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    hosts: list[str] = (),  # type: ignore[assignment]
    client: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        alt: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass
class Init:
    directory: Path
    desks: list[Desk]
    centrals: list[str]
    created: list[str]


def init(
    directory: Path,
    desks: list[Desk],
    *,
    hosts: list[str],
    port: int = 8883,
    bind: str = "0.0.0.0",
    centrals: int = 2,
    client_certs: bool = False,
    log_refusals: bool = True,
) -> Init:
    """Write (or complete) the broker's files in ``directory``; returns what was created."""
    directory.mkdir(parents=True, exist_ok=True)
    secret_dir = directory / "secrets"
    secret_dir.mkdir(mode=0o700, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    created: list[str] = []
    known = _known_desks(directory)
    for desk in desks:
        if desk.name in known and known[desk.name] != desk:
            raise ValueError(f"desk name {desk.name!r} is already used at site {known[desk.name].site!r}")
        known[desk.name] = desk
    all_desks = sorted(known.values(), key=lambda d: (d.site, d.name))
    central_names = [f"central-{n}" for n in range(1, centrals + 1)]
    if set(central_names) & set(known):
        raise ValueError("a desk may not be named like a central account (central-N)")
    # The CA and the server certificate (kept when present).
    ca_key = _load_or_make_key(directory / "ca.key")
    ca_path = directory / "ca.pem"
    if not ca_path.exists():
        ca_path.write_bytes(_certificate("offhook floor test CA", ca_key, None, ca=True).public_bytes(_PEM))
        created.append("ca.pem")
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    issuer = (ca_cert.subject, ca_key)
    server_key = _load_or_make_key(directory / "server.key")
    server_path = directory / "server.pem"
    if not server_path.exists():
        cert = _certificate(hosts[0], server_key, issuer, hosts=[*hosts, "localhost", "127.0.0.1"])
        server_path.write_bytes(cert.public_bytes(_PEM))
        created.append("server.pem")
    # Accounts: one password each, kept across runs.
    hashes_: list[str] = []
    for account in [*central_names, *(d.name for d in all_desks)]:
        secret = secret_dir / f"{account}.password"
        if not secret.exists():
            _write_private(secret, (secrets.token_urlsafe(32) + "\n").encode())
            created.append(f"secrets/{account}.password")
        hashes_.append(f"{account}:{hash_password(secret.read_text().strip())}")
        if client_certs and account not in central_names:
            _client_cert(secret_dir, account, issuer, created)
    _write_private(directory / "passwords", ("\n".join(hashes_) + "\n").encode())
    (directory / "acl").write_text(acl_text(all_desks, central_names))
    (directory / "desks.txt").write_text("".join(f"{d.site}/{d.name}\n" for d in all_desks))
    conf = mosquitto_conf(
        directory, port=port, bind=bind, cert_port=port + 1 if client_certs else None, log_refusals=log_refusals
    )
    (directory / "mosquitto.conf").write_text(conf)
    return Init(directory, all_desks, central_names, created)


def _client_cert(
    secret_dir: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey], created: list[str]
) -> None:
    key = _load_or_make_key(secret_dir / f"{name}.key")
    path = secret_dir / f"{name}.pem"
    if not path.exists():
        _write_private(path, _certificate(name, key, issuer, client=True).public_bytes(_PEM))
        created.append(f"secrets/{name}.pem")


def _known_desks(directory: Path) -> dict[str, Desk]:
    listing = directory / "desks.txt"
    if not listing.exists():
        return {}
    desks = [Desk.parse(line) for line in listing.read_text().splitlines() if line.strip()]
    return {desk.name: desk for desk in desks}


def desk_config(desk: Desk, broker: str, *, password_file: str, ca_file: str, team: str = "") -> str:
    """The ``[floor]`` section of one desk's config.toml (the desk's password file is 0600 on its PC)."""
    return (
        "[floor]\n"
        f'broker = "{broker}"\n'
        f'username = "{desk.name}"\n'
        f'password_file = "{password_file}"\n'
        f'ca_file = "{ca_file}"\n'
        f'site = "{desk.site}"\n'
        f'team = "{team}"\n'
    )


_PEM = serialization.Encoding.PEM
