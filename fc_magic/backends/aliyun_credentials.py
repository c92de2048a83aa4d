"""Client credentials for Alibaba Cloud: a named profile, the Lithops config, or the default chain.

The chain is the one of ``alibabacloud-credentials`` (the library the FC SDK
itself uses), walked here source by source so the cell can say which one
answered: environment variables, OIDC (RRSA), the ``aliyun`` CLI's
``~/.aliyun/config.json`` profiles (AK, StsToken, RamRoleArn, EcsRamRole,
OIDC ... modes), ``~/.alibabacloud/credentials.ini``, the ECS / PAI-DSW
instance RAM role through the metadata service, and a credentials URI. The
library reads most environment variables once at import; this module reads
them when a map starts and hands the providers explicit values, so a change
of environment in a running kernel counts.

A provider is kept per source (`resolve` caches it): the providers of
temporary credentials (RamRoleArn, EcsRamRole, OIDC, URI) refresh them
before they expire, and the FC client and OSS ask the provider on every
request, so a map outlives any one STS token.
"""
from __future__ import annotations

import configparser
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputProblem

logger = logging.getLogger(__name__)

ENV_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE = "ALIBABA_CLOUD_PROFILE"
ENV_CREDENTIALS_FILE = "ALIBABA_CLOUD_CREDENTIALS_FILE"
ENV_CREDENTIALS_URI = "ALIBABA_CLOUD_CREDENTIALS_URI"
ENV_ECS_ROLE = "ALIBABA_CLOUD_ECS_METADATA"
ENV_ECS_DISABLED = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
ENV_CLI_DISABLED = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
ENV_OIDC = ("ALIBABA_CLOUD_ROLE_ARN", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE")
#: The metadata service answers at once on ECS / PAI-DSW; elsewhere nothing answers.
ECS_TIMEOUT_MS = 1000

#: The keys of the Lithops config's ``aliyun:`` section that are credentials.
LITHOPS_KEYS = ("access_key_id", "access_key_secret", "security_token")


def shown_key(access_key_id: str | None) -> str:
    """An AccessKey id as the cell may show it: its first 4 and last 2 characters."""
    key = access_key_id or ""
    return f"{key[:4]}…{key[-2:]}" if len(key) > 8 else "(unset)"


@dataclass(frozen=True)
class Current:
    """One moment's credentials (a token and its expiry for temporary ones)."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass
class CredentialSource:
    """Where a map's credentials come from, and the provider that keeps them current."""

    where: str          # "the aliyun CLI profile 'dev' (~/.aliyun/config.json)"
    kind: str           # "AccessKey", "StsToken", "RamRoleArn", "EcsRamRole", ...
    provider: Any = field(repr=False)  # an alibabacloud-credentials ICredentialsProvider

    def current(self) -> Current:
        """The credentials now (the provider refreshes temporary ones before they expire)."""
        creds = self.provider.get_credentials()
        return Current(creds.get_access_key_id(), creds.get_access_key_secret(),
                       creds.get_security_token() or None)

    def line(self) -> str:
        """One line for the cell: source, kind and the shortened AccessKey id, never a secret."""
        return (f"credentials: {self.where}, {self.kind}, AccessKey "
                f"{shown_key(self.current().access_key_id)}")

    # oss2's ProviderAuth asks its provider for get_credentials() with these getters.
    def get_credentials(self) -> Any:
        return self.provider.get_credentials()


def _static(access_key_id: str, secret: str, token: str | None) -> Any:
    from alibabacloud_credentials.provider import (StaticAKCredentialsProvider,
                                                   StaticSTSCredentialsProvider)

    if token:
        return StaticSTSCredentialsProvider(access_key_id=access_key_id,
                                            access_key_secret=secret, security_token=token)
    return StaticAKCredentialsProvider(access_key_id=access_key_id, access_key_secret=secret)


def _home_file(*parts: str) -> str:
    return os.path.join(os.path.expanduser("~"), *parts)


def _cli_file() -> str:
    return _home_file(".aliyun", "config.json")


def _ini_file() -> str:
    return os.environ.get(ENV_CREDENTIALS_FILE) or _home_file(".alibabacloud", "credentials.ini")


def _tilde(path: str) -> str:
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def _cli_profile(name: str | None) -> tuple[str, str] | None:
    """(profile name, mode) of the aliyun CLI profile ``name`` (None: its current one)."""
    path = _cli_file()
    if os.environ.get(ENV_CLI_DISABLED, "").lower() == "true" or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputProblem(f"the aliyun CLI config {_tilde(path)} cannot be read "
                           f"({type(exc).__name__}); fix it with `aliyun configure`") from None
    wanted = name or config.get("current") or "default"
    for profile in config.get("profiles") or []:
        if isinstance(profile, dict) and profile.get("name") == wanted:
            return wanted, str(profile.get("mode") or "AK")
    return None


_INI_KINDS = {"access_key": "AccessKey", "ram_role_arn": "RamRoleArn",
              "oidc_role_arn": "OIDC", "ecs_ram_role": "EcsRamRole",
              "rsa_key_pair": "RsaKeyPair"}


def _ini_profile(name: str | None) -> tuple[str, str] | None:
    """(section, kind) of ``name`` in the credentials file (None: $ALIBABA_CLOUD_PROFILE or default)."""
    path = _ini_file()
    if not os.path.isfile(path):
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError) as exc:
        raise InputProblem(f"the credentials file {_tilde(path)} cannot be read "
                           f"({type(exc).__name__}); fix its [profile] sections") from None
    wanted = name or os.environ.get(ENV_PROFILE) or "default"
    if not parser.has_section(wanted):
        return None
    kind = parser.get(wanted, "type", fallback="")
    return wanted, _INI_KINDS.get(kind, kind or "unknown")


def _from_profile(profile: str | None, strict: bool) -> CredentialSource | None:
    from alibabacloud_credentials.provider import (CLIProfileCredentialsProvider,
                                                   ProfileCredentialsProvider)

    found = _cli_profile(profile)
    if found is not None:
        name, mode = found
        return CredentialSource(f"the aliyun CLI profile '{name}' ({_tilde(_cli_file())})",
                                mode, CLIProfileCredentialsProvider(profile_name=name,
                                                                    profile_file=_cli_file()))
    found = _ini_profile(profile)
    if found is not None:
        name, kind = found
        return CredentialSource(f"the profile [{name}] of {_tilde(_ini_file())}", kind,
                                ProfileCredentialsProvider(profile_name=name,
                                                           profile_file=_ini_file()))
    if strict:
        raise InputProblem(f"FCMagic.profile {profile!r} is neither in {_tilde(_cli_file())} "
                           f"nor in {_tilde(_ini_file())}; create it with `aliyun configure "
                           f"--profile {profile}` or fix %config FCMagic.profile")
    return None


def _ecs_role() -> CredentialSource | None:
    """The instance RAM role of an ECS / PAI-DSW instance, when its metadata service answers."""
    from alibabacloud_credentials.http import HttpOptions
    from alibabacloud_credentials.provider import EcsRamRoleCredentialsProvider

    if os.environ.get(ENV_ECS_DISABLED, "").lower() == "true":
        return None
    try:
        # No background refresher thread: the provider refreshes when asked.
        provider = EcsRamRoleCredentialsProvider(
            role_name=os.environ.get(ENV_ECS_ROLE) or None, async_update_enabled=False,
            http_options=HttpOptions(connect_timeout=ECS_TIMEOUT_MS,
                                     read_timeout=ECS_TIMEOUT_MS))
    except ValueError as exc:  # the library read ..._DISABLED=true when it was imported
        logger.debug("the ECS metadata chain is disabled: %s", exc)
        return None
    # The library logs each failed attempt with a traceback through a stderr
    # handler of its own; off ECS a failed probe is the expected answer.
    library_logger = logging.getLogger("credentials")
    level = library_logger.level
    library_logger.setLevel(logging.CRITICAL + 1)
    try:
        provider.get_credentials()
    except Exception as exc:  # the library raises its own and the HTTP stack's errors
        logger.debug("no ECS instance RAM role: %s", type(exc).__name__)
        return None
    finally:
        library_logger.setLevel(level)
    role = os.environ.get(ENV_ECS_ROLE) or _metadata_role_name(provider)
    return CredentialSource("the instance RAM role (ECS metadata service"
                            + (f", role {role})" if role else ")"), "EcsRamRole", provider)


def _metadata_role_name(provider: Any) -> str:
    """The role the metadata service reports, asked through the provider's own lookup.

    The library finds the name (IMDSv2 token, proxy, timeouts) but keeps it to
    itself; its lookup is reused rather than rewritten. "" when it cannot say.
    """
    lookup = getattr(provider, "_get_role_name", None)
    if lookup is None:
        return ""
    try:
        return str(lookup()).strip()
    except Exception as exc:  # the library raises its own and the HTTP stack's errors
        logger.debug("the metadata service did not name the role: %s", type(exc).__name__)
        return ""


def _looked() -> str:
    return ", ".join([
        "the Lithops config ('aliyun:' access_key_id/access_key_secret)",
        f"{ENV_ID}/{ENV_SECRET}", f"OIDC ({ENV_OIDC[2]})",
        f"{_tilde(_cli_file())}", f"{_tilde(_ini_file())}",
        "the ECS metadata service (instance RAM role)", ENV_CREDENTIALS_URI])


_CACHE: dict[tuple, CredentialSource] = {}
_CACHE_LOCK = threading.Lock()


def _fingerprint(lithops_aliyun: dict, profile: str | None) -> tuple:
    env = tuple(os.environ.get(k) for k in (ENV_ID, ENV_SECRET, ENV_TOKEN, ENV_PROFILE,
                                           ENV_CREDENTIALS_FILE, ENV_CREDENTIALS_URI,
                                           ENV_ECS_ROLE, ENV_ECS_DISABLED, *ENV_OIDC,
                                           "HOME"))
    files = []
    for path in (_cli_file(), _ini_file()):
        try:
            files.append(os.stat(path).st_mtime_ns)
        except OSError:
            files.append(None)
    return (profile, tuple(lithops_aliyun.get(k) for k in LITHOPS_KEYS), env, tuple(files))


def resolve(lithops_aliyun: dict, profile: str | None = None) -> CredentialSource:
    """The source of a map's credentials; `InputProblem` (one line, no secret) when none.

    Order: ``FCMagic.profile`` when set (that profile only); else the
    Lithops config's keys (as fc_magic always read them); else the
    default chain of alibabacloud-credentials, in its own order.
    """
    key = _fingerprint(lithops_aliyun, profile)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    source = _resolve(lithops_aliyun, profile)
    try:
        source.current()
    except InputProblem:
        raise
    except Exception as exc:  # providers raise CredentialException, HTTP and parse errors
        raise InputProblem(f"the credentials of {source.where} ({source.kind}) could not be "
                           f"loaded: {type(exc).__name__}; check that source or pick another "
                           f"with %config FCMagic.profile") from None
    with _CACHE_LOCK:
        _CACHE[key] = source
    return source


def _resolve(lithops_aliyun: dict, profile: str | None) -> CredentialSource:
    from alibabacloud_credentials.provider import (OIDCRoleArnCredentialsProvider,
                                                   URLCredentialsProvider)

    if profile:
        source = _from_profile(profile, strict=True)
        assert source is not None
        return source
    key_id, secret = lithops_aliyun.get("access_key_id"), lithops_aliyun.get("access_key_secret")
    if key_id or secret:
        from .aliyun_fc import CONFIG_HINT

        if not (key_id and secret):
            missing = "access_key_secret" if key_id else "access_key_id"
            raise InputProblem(f"backend 'aliyun_fc' needs {missing} under 'aliyun:' "
                               f"{CONFIG_HINT}")
        token = lithops_aliyun.get("security_token")
        return CredentialSource("the Lithops config", "StsToken" if token else "AccessKey",
                                _static(key_id, secret, token))
    env_id, env_secret = os.environ.get(ENV_ID), os.environ.get(ENV_SECRET)
    if env_id and env_secret:
        token = os.environ.get(ENV_TOKEN)
        return CredentialSource(f"the environment ({ENV_ID})", "StsToken" if token else
                                "AccessKey", _static(env_id, env_secret, token))
    oidc = [os.environ.get(k) for k in ENV_OIDC]
    if all(oidc):
        return CredentialSource(f"OIDC ({ENV_OIDC[0]})", "OIDC", OIDCRoleArnCredentialsProvider(
            role_arn=oidc[0], oidc_provider_arn=oidc[1], oidc_token_file_path=oidc[2]))
    source = _from_profile(None, strict=False)
    if source is not None:
        return source
    source = _ecs_role()
    if source is not None:
        return source
    uri = os.environ.get(ENV_CREDENTIALS_URI)
    if uri:
        return CredentialSource(f"the credentials URI ({ENV_CREDENTIALS_URI})", "URI",
                                URLCredentialsProvider(uri=uri))
    raise InputProblem(f"backend 'aliyun_fc' found no Alibaba Cloud credentials; looked in "
                       f"{_looked()}; run `aliyun configure` (then %config FCMagic.profile) "
                       f"or set them in one of these")
