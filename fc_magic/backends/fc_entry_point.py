"""fc_magic's Function Compute handler around Lithops' own: OSS on the function's role, no credentials for user code.

Shipped at the root of every code package fc_magic builds as ``entry_point.py``
(FC calls ``entry_point.main``), with Lithops' handler beside it as
``lithops_entry_point.py``. It runs on FC's Python, never in the client, and
imports only what a package holds (Lithops, oss2 from FC's base environment).

- The invoke payload carries no credentials (the client strips them,
  `lithops_fixes.strip_invoke_credentials`): the worker's OSS client signs with
  FC's ``context.credentials``, the temporary credentials of the function's RAM
  role, given afresh with every invocation.
- What the user's function can read holds no credentials: the Lithops config it
  gets (``LITHOPS_CONFIG``) has none, and credentials in the instance's
  environment are removed before Lithops starts the task.
- Fork safety: Lithops forks the task process (JobRunner) while its OSS client
  holds a pooled keep-alive connection; parent and child then write to one
  socket and their requests interleave (random task errors under load). Each
  process here opens its own connections.
- Preloading: FC runs ``initializer`` once per instance (the function's
  ``instanceLifecycleConfig.initializer``, set by `aliyun_deploy`). It imports
  the runtime's declared top-level modules, listed at build time in
  ``fc_magic_preload.json``, so every task process Lithops forks from this one
  starts with them loaded instead of importing them again. FC's code folder
  is read-only, so without it each task would also compile their bytecode
  again. A module that fails to import is skipped: the task's own import then
  reports the error where the user sees it.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time

import lithops_entry_point

logger = logging.getLogger("lithops.worker")

#: Credentials in a Lithops config section.
CONFIG_KEYS = ("access_key_id", "access_key_secret", "security_token")
#: Where FC and Alibaba Cloud's tools put credentials in a process environment.
ENV_KEYS = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN", "ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET",
            "ALIYUN_SECURITY_TOKEN", "accessKeyID", "accessKeySecret", "securityToken")
#: The key of the deploy-time role check (fc_magic's metadata invocation asks for it).
ROLE_CHECK = "fc_magic_role_check"
NO_ROLE = ("this function has no usable RAM role (FC passed no credentials): set role_arn "
           "under 'aliyun_fc:' to a role FC may assume whose policy allows oss:GetObject, "
           "oss:PutObject, oss:DeleteObject and oss:ListObjects on the Lithops bucket")


class RoleProblem(RuntimeError):
    """The function's role is missing or may not use the Lithops bucket (FC's errorType)."""


def check_role(context, check: dict) -> None:
    """At deploy: can this function's role write, read and delete under the job prefix?

    FC gives the role's credentials to every invocation; a role whose policy
    does not cover the bucket fails here, once, instead of in every task.
    """
    import oss2

    try:
        ROLE.update(getattr(context, "credentials", None))
    except RuntimeError as exc:
        raise RoleProblem(str(exc)) from None
    bucket = oss2.Bucket(oss2.ProviderAuth(ROLE), check["endpoint"], check["bucket"])
    key = check["key"]
    try:
        bucket.put_object(key, b"fc_magic role check")
        bucket.get_object(key).read()
        bucket.delete_object(key)
    except oss2.exceptions.OssError as exc:
        if exc.status in (401, 403):
            raise RoleProblem(f"OSS refused the function's role on bucket {check['bucket']}: "
                              f"{exc.code}") from None
        raise


def _field(credentials, *names: str) -> str:
    for name in names:
        value = getattr(credentials, name, None)
        if value:
            return value
    return ""


class RoleCredentials:
    """The function role's current credentials, as ``oss2.ProviderAuth`` asks for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = None

    def update(self, context_credentials) -> None:
        import oss2

        key_id = _field(context_credentials, "access_key_id", "accessKeyId")
        secret = _field(context_credentials, "access_key_secret", "accessKeySecret")
        token = _field(context_credentials, "security_token", "securityToken")
        if not (key_id and secret):
            raise RuntimeError(NO_ROLE)
        with self._lock:
            self._current = oss2.credentials.Credentials(key_id, secret, token)

    def get_credentials(self):
        with self._lock:
            return self._current

    @property
    def access_key_id(self) -> str:
        current = self.get_credentials()
        return current.get_access_key_id() if current is not None else ""


#: Written at build time beside this file: {"modules": [top-level module names]}.
PRELOAD_FILE = "fc_magic_preload.json"
#: No new preload import starts after this long (the hook's own timeout is larger).
PRELOAD_BUDGET_S = 120.0

ROLE = RoleCredentials()
_patched = False


def _patch_oss_backend() -> None:
    """Lithops' OSS backend in this process: signs with the role, connections per process."""
    global _patched
    if _patched:
        return
    import oss2
    from lithops.storage.backends.aliyun_oss import aliyun_oss

    backend = aliyun_oss.AliyunObjectStorageServiceBackend
    original_init = backend.__init__

    def __init__(self, oss_config):
        # Lithops reads the key pair from its config, which has none by design:
        # the id (for its bucket-name hash) is the role's, the auth asks ROLE.
        original_init(self, dict(oss_config, access_key_id=ROLE.access_key_id,
                                 access_key_secret=""))
        self.auth = oss2.ProviderAuth(ROLE)

    def _connect_bucket(self, bucket_name):
        bucket = getattr(self, "bucket", None)
        pid = os.getpid()
        if (bucket is None or bucket.bucket_name != bucket_name
                or getattr(self, "_fc_magic_pid", None) != pid):
            # Never use a connection pool inherited through fork: the parent
            # still reads and writes on those sockets.
            self.bucket = oss2.Bucket(self.auth, self.endpoint, bucket_name)
            self._fc_magic_pid = pid
        return self.bucket

    backend.__init__ = __init__
    backend._connect_bucket = _connect_bucket
    _patched = True


def strip(config: dict) -> None:
    """Remove credentials from every section of a Lithops config, in place."""
    for section in config.values():
        if isinstance(section, dict):
            for key in CONFIG_KEYS:
                section.pop(key, None)


def preload_modules(folder: str | None = None) -> list[str]:
    """The module names the package's preload list holds ([] without one)."""
    path = os.path.join(folder or os.path.dirname(os.path.abspath(__file__)), PRELOAD_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return []
    except ValueError as exc:
        logger.warning("ignoring %s: %s", PRELOAD_FILE, exc)
        return []
    names = data.get("modules") if isinstance(data, dict) else None
    return [n for n in names or () if isinstance(n, str) and n.isidentifier()]


def initializer(context):
    """FC's instance initializer: import the runtime's declared modules once per instance."""
    for name in ENV_KEYS:  # imported code never sees the client's credentials either
        os.environ.pop(name, None)
    started = time.monotonic()
    for name in preload_modules():
        if time.monotonic() - started > PRELOAD_BUDGET_S:
            logger.warning("preload budget spent; %s is imported by the tasks themselves", name)
            break
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import error: the task's own import reports it
            logger.warning("preloading %s failed (%s: %s); tasks import it themselves",
                           name, type(exc).__name__, str(exc)[:200])


def main(event, context):
    for name in ENV_KEYS:
        os.environ.pop(name, None)
    args = json.loads(event)
    if "get_metadata" in args and isinstance(args.get(ROLE_CHECK), dict):
        check_role(context, args.pop(ROLE_CHECK))
        event = json.dumps(args)
    if "get_metadata" not in args:
        ROLE.update(getattr(context, "credentials", None))
        _patch_oss_backend()
        config = args.get("config")
        if isinstance(config, dict):
            strip(config)  # whatever a client sent, the user's code never sees it
        event = json.dumps(args)
    return lithops_entry_point.main(event, context)
