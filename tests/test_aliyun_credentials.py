"""Credentials the Alibaba Cloud way (issue #12), against the sandbox with the real SDKs.

One sandbox (holding every invoke payload in memory) and one FC runtime build
for the module. Each credential source runs a real map; the user's secret and
token are scanned for in every payload and every worker environment; a map
outlives its STS token; 500 tasks under concurrency have no task error.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import oss2
import pytest
import yaml
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from Tea.exceptions import TeaException

from fc_magic import engine
from fc_magic.backends import aliyun_credentials, aliyun_fc
from fc_magic.sandbox import DEFAULT_BUCKET, Sandbox

KNOWN_SECRET = "KnownUserSecretForScan0123456789"


@pytest.fixture(scope="module")
def sandbox(lithops_cache):
    with Sandbox(concurrency=4, access_key_secret=KNOWN_SECRET, keep_payloads=True) as sb:
        yield sb


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from fc_magic.requirements import resolve_requirements
    from fc_magic.runtime import ensure_runtime

    reqs = resolve_requirements("humanize\n", backend="aliyun_fc")
    return ensure_runtime("creds", reqs, target="fc",
                          cache_dir=str(tmp_path_factory.mktemp("xdg") / "fc_magic"))


@pytest.fixture(scope="module")
def keyless_config(sandbox, tmp_path_factory) -> str:
    """The sandbox's Lithops config without credentials (they come from elsewhere)."""
    config = sandbox.lithops_config()
    for key in ("access_key_id", "access_key_secret"):
        del config["aliyun"][key]
    path = tmp_path_factory.mktemp("keyless") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No credentials anywhere but where a test puts them; a home of its own."""
    for name in list(os.environ):
        if name.startswith(("ALIBABA_CLOUD_", "ALIYUN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(aliyun_credentials.ENV_ECS_DISABLED, "true")
    return tmp_path


def _request(runtime, config_file, **kw) -> engine.MapRequest:
    return engine.MapRequest(backend="aliyun_fc", runtime=runtime.deploy_name,
                             package=runtime.package, config_file=config_file,
                             memory_mb=256, timeout_s=60, **kw)


def _square():
    # Task functions are made inside a function so cloudpickle sends them by
    # value: a module-level one is sent by reference and Lithops would ship this
    # test module, whose imports (yaml, pytest) no FC runtime has.
    def square(x):
        return x * x
    return square


def _run(runtime, config_file, func=None, items=range(4), **kw):
    func = func or _square()
    request = _request(runtime, config_file, **kw)
    line = aliyun_fc.BACKEND.note(request)
    result = engine.run_map(func, list(items), request)
    return line, result


def test_environment_access_key_runs_a_map(sandbox, runtime, keyless_config, clean_env,
                                           monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", sandbox.access_key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", sandbox.access_key_secret)
    line, result = _run(runtime, keyless_config)
    assert result.values == [0, 1, 4, 9]
    assert line == (f"credentials: the environment (ALIBABA_CLOUD_ACCESS_KEY_ID), AccessKey, "
                    f"AccessKey {sandbox.access_key_id[:4]}…{sandbox.access_key_id[-2:]}")


def test_sts_token_from_the_environment_runs_a_map(sandbox, runtime, keyless_config,
                                                   clean_env, monkeypatch):
    sts = sandbox.issue_sts()
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", sts["AccessKeyId"])
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", sts["AccessKeySecret"])
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", sts["SecurityToken"])
    line, result = _run(runtime, keyless_config)
    assert result.values == [0, 1, 4, 9]
    assert "the environment (ALIBABA_CLOUD_ACCESS_KEY_ID), StsToken, AccessKey STS." in line
    assert sts["AccessKeySecret"] not in line and sts["SecurityToken"] not in line


def test_credentials_file_profile_runs_a_map(sandbox, runtime, keyless_config, clean_env):
    ini = clean_env / ".alibabacloud" / "credentials.ini"
    ini.parent.mkdir()
    ini.write_text(f"[default]\ntype = access_key\naccess_key_id = nobody\n"
                   f"access_key_secret = nothing\n\n[work]\ntype = access_key\n"
                   f"access_key_id = {sandbox.access_key_id}\n"
                   f"access_key_secret = {sandbox.access_key_secret}\n")
    line, result = _run(runtime, keyless_config, profile="work")
    assert result.values == [0, 1, 4, 9]
    assert line.startswith("credentials: the profile [work] of "
                           "~/.alibabacloud/credentials.ini, AccessKey, AccessKey LTAI")


def test_aliyun_cli_profile_through_the_magic_says_its_source(sandbox, runtime, keyless_config,
                                                              clean_env, fc, cell):
    sts = sandbox.issue_sts()
    cli = clean_env / ".aliyun" / "config.json"
    cli.parent.mkdir()
    cli.write_text(json.dumps({"current": "default", "profiles": [
        {"name": "default", "mode": "AK", "access_key_id": "LTAInobody000000",
         "access_key_secret": "nothing"},
        {"name": "dsw", "mode": "StsToken", "access_key_id": sts["AccessKeyId"],
         "access_key_secret": sts["AccessKeySecret"], "sts_token": sts["SecurityToken"],
         "region_id": sandbox.region}]}))
    fc.backend = "aliyun_fc"
    fc.config_file = keyless_config
    fc.cache_dir = str(Path(runtime.package).parents[2])
    with capture_output():
        cell("%%fc_runtime creds\nhumanize\n")
    cell("def sq(x):\n    return x * x\n")
    cell("%config FCMagic.profile = 'dsw'")
    with capture_output() as cap:
        result = cell("%fc_map sq range(5)")
    assert result.values == [0, 1, 4, 9, 16]
    first = cap.stdout.splitlines()[0]
    assert first == (f"credentials: the aliyun CLI profile 'dsw' (~/.aliyun/config.json), "
                     f"StsToken, AccessKey {sts['AccessKeyId'][:4]}…{sts['AccessKeyId'][-2:]}")
    for secret in (sts["AccessKeySecret"], sts["SecurityToken"]):
        assert secret not in cap.stdout and secret not in cap.stderr
    cell("%config FCMagic.profile = 'nosuch'")
    with pytest.raises(UsageError) as err:
        cell("%fc_map sq range(5)")
    assert str(err.value) == (
        "%fc_map: FCMagic.profile 'nosuch' is neither in ~/.aliyun/config.json nor in "
        "~/.alibabacloud/credentials.ini; create it with `aliyun configure --profile nosuch` "
        "or fix %config FCMagic.profile")


def test_lithops_config_keys_run_a_map_and_none_found_names_where_it_looked(
        sandbox, runtime, keyless_config, clean_env, tmp_path):
    with_keys = tmp_path / "with-keys.yaml"
    with_keys.write_text(sandbox.config_yaml())
    line, result = _run(runtime, str(with_keys))
    assert result.values == [0, 1, 4, 9]
    assert line.startswith("credentials: the Lithops config, AccessKey, AccessKey LTAI")
    with pytest.raises(aliyun_credentials.InputProblem) as err:
        aliyun_fc.BACKEND.check(_request(runtime, keyless_config))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("backend 'aliyun_fc' found no Alibaba Cloud credentials; "
                              "looked in the Lithops config")
    for place in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "~/.aliyun/config.json",
                  "~/.alibabacloud/credentials.ini", "ECS metadata", "OIDC"):
        assert place in message


def _substrings(secret: str, n: int = 6) -> set[str]:
    return {secret[i:i + n] for i in range(len(secret) - n + 1)}


def _worker_environment():
    def worker_environment(_x):
        import os
        return dict(os.environ)
    return worker_environment


def test_no_user_secret_or_token_in_payloads_or_worker_environments(
        sandbox, runtime, keyless_config, clean_env, monkeypatch, tmp_path, tally):
    with_keys = tmp_path / "with-keys.yaml"
    with_keys.write_text(sandbox.config_yaml())
    del sandbox.functions.payloads[:]
    signed_before = sandbox.role_keys_used
    _line, by_key = _run(runtime, str(with_keys), func=_worker_environment(), items=range(6))
    sts = sandbox.issue_sts()
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", sts["AccessKeyId"])
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", sts["AccessKeySecret"])
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", sts["SecurityToken"])
    _line, by_token = _run(runtime, keyless_config, func=_worker_environment(), items=range(6))
    payloads = [p.decode("utf-8", "replace") for p in sandbox.functions.payloads]
    envs = [json.dumps(env) for env in by_key.values + by_token.values]
    assert len(payloads) >= 12 and len(envs) == 12
    assert all("LITHOPS_CONFIG" in env for env in by_key.values + by_token.values)
    assert all("access_key_id" not in env["LITHOPS_CONFIG"]
               for env in by_key.values + by_token.values)
    pieces = (_substrings(KNOWN_SECRET) | _substrings(sts["AccessKeySecret"])
              | _substrings(sts["SecurityToken"]))
    found = 0
    for text in payloads + envs:
        tally.secret_scans += 1
        found += any(piece in text for piece in pieces)
    tally.secrets_found += found
    assert found == 0
    # Each invocation gets fresh role credentials; the workers signed OSS with them.
    assert sandbox.role_keys_used - signed_before >= 12


def test_a_map_outlives_its_sts_token(sandbox, runtime, keyless_config, clean_env,
                                      monkeypatch):
    monkeypatch.setattr(sandbox, "sts_ttl_s", 2.0)
    monkeypatch.setenv("ALIBABA_CLOUD_CREDENTIALS_URI", sandbox.credentials_uri)
    issued = len(sandbox.client_tokens)
    def slow_square(x):
        import time
        time.sleep(0.4)
        return x * x

    start = time.time()
    line, result = _run(runtime, keyless_config, func=slow_square, items=range(24))
    assert result.values == [x * x for x in range(24)]
    assert line.startswith("credentials: the credentials URI (ALIBABA_CLOUD_CREDENTIALS_URI), "
                           "URI, AccessKey STS.")
    tokens = sandbox.client_tokens[issued:]
    assert tokens[0].expiration < time.time(), "the first token expired during the map"
    assert time.time() - start > 2.0 and len(tokens) > 2, "refreshed, not reused"


def test_expired_and_missing_tokens_are_refused_with_the_services_codes(sandbox):
    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as open_api_models

    sts = sandbox.issue_sts(ttl_s=1.0)
    auth = oss2.StsAuth(sts["AccessKeyId"], sts["AccessKeySecret"], sts["SecurityToken"])
    bucket = oss2.Bucket(auth, sandbox.host, DEFAULT_BUCKET)
    bucket.create_bucket()
    bucket.put_object("sts-probe", b"ok")
    no_token = oss2.Bucket(oss2.Auth(sts["AccessKeyId"], sts["AccessKeySecret"]),
                           sandbox.host, DEFAULT_BUCKET)
    with pytest.raises(oss2.exceptions.OssError) as err:
        no_token.get_object("sts-probe")
    assert err.value.status == 403 and err.value.code == "InvalidAccessKeyId"
    time.sleep(1.1)
    with pytest.raises(oss2.exceptions.OssError) as err:
        bucket.get_object("sts-probe")
    assert err.value.status == 403 and err.value.code == "SecurityTokenExpired"
    client = Client(open_api_models.Config(
        access_key_id=sts["AccessKeyId"], access_key_secret=sts["AccessKeySecret"],
        security_token=sts["SecurityToken"], endpoint=sandbox.host, protocol="http"))
    with pytest.raises(TeaException) as err:
        client.list_functions(fc_models.ListFunctionsRequest())
    assert getattr(err.value, "code", None) == "InvalidSecurityToken.Expired"


@pytest.mark.slow
@pytest.mark.timeout(400)  # a hung map fails here, not at the suite's limit
def test_500_tasks_under_concurrency_have_no_task_errors(sandbox, runtime, tmp_path,
                                                         clean_env):
    # Lithops forks the task process while its OSS client holds a pooled
    # connection; without fc_magic's handler's per-process connections,
    # parent and child interleave requests on one socket under load.
    config = tmp_path / "config.yaml"
    config.write_text(sandbox.config_yaml())

    def count_call(x):
        return x + 1

    # 10 tasks per invocation (Lithops' chunksize): each task is still its own
    # forked JobRunner, and the module's 4-instance sandbox keeps all busy.
    _line, result = _run(runtime, str(config), func=count_call, items=range(500),
                         extra_config={"lithops": {"chunksize": 10}})
    assert result.failures == []
    assert result.values == [x + 1 for x in range(500)]


def _probe_paths():
    def probe(path):
        # What a task meets when it reaches for a client's file, or tries to write one.
        import os
        mode, _, path = path.partition(":")
        try:
            if mode == "read":
                with open(path, "rb") as f:
                    return "read " + str(len(f.read()))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("written by a task")
            return "wrote"
        except OSError as exc:
            return type(exc).__name__
    return probe


def test_a_task_cannot_read_the_clients_files(sandbox, runtime, clean_env, tmp_path,
                                              lithops_cache):
    assert sandbox.executor.isolation.available, sandbox.executor.isolation.reason
    config = tmp_path / "lithops-config.yaml"      # the Lithops config, with the key
    config.write_text(sandbox.config_yaml())
    planted = clean_env / "planted-in-home.txt"    # a file in the client's home
    planted.write_text("the client's")
    lithops_dir = Path(lithops_cache).parent       # the client's ~/.lithops (per module)
    (lithops_dir / "config").write_text(sandbox.config_yaml())
    paths = [config, planted, lithops_dir / "config", Path(__file__),
             Path(runtime.package), Path(sandbox.work_dir) / "bodies"]
    _line, result = _run(runtime, str(config), func=_probe_paths(),
                         items=[f"read:{p}" for p in paths])
    assert all(p.exists() for p in paths[:-1])
    assert result.values == ["FileNotFoundError"] * len(paths)


def test_a_task_cannot_write_into_the_clients_folders(sandbox, runtime, clean_env, tmp_path):
    config = tmp_path / "lithops-config.yaml"
    config.write_text(sandbox.config_yaml())
    cache = Path(runtime.package).parents[2]     # fc_magic's cache (runtimes)
    targets = [cache / "from-a-task.txt", Path(sandbox.cache_dir) / "from-a-task.txt",
               tmp_path / "from-a-task.txt", Path("/tmp/from-a-task.txt")]
    _line, result = _run(runtime, str(config), func=_probe_paths(),
                         items=[f"write:{p}" for p in targets])
    # Each write lands in the instance's own /tmp (gone with it) or is refused:
    # the client's folders are not there, and the system's are read-only.
    assert result.values[1] == "OSError"       # read-only file system, as on FC
    assert result.values[3] == "wrote"
    assert not any(p.exists() for p in targets)


def test_instance_ram_role_through_the_metadata_service_runs_a_map(
        sandbox, runtime, keyless_config, clean_env, monkeypatch):
    from alibabacloud_credentials.utils import auth_util

    # Nothing else: no keys in the environment or the config, no profile files.
    monkeypatch.delenv(aliyun_credentials.ENV_ECS_DISABLED)
    monkeypatch.setattr(auth_util, "environment_ecs_metadata_disabled", "false")
    monkeypatch.setattr(sandbox.metadata, "role", "pai-dsw-notebook")
    # The library's only way to another metadata address: its HTTP proxy.
    monkeypatch.setenv("HTTP_PROXY", sandbox.metadata_proxy)
    served = sandbox.metadata.served
    line, result = _run(runtime, keyless_config)
    assert result.values == [0, 1, 4, 9]
    assert line.startswith("credentials: the instance RAM role (ECS metadata service, role "
                           "pai-dsw-notebook), EcsRamRole, AccessKey STS.")
    assert sandbox.metadata.served > served


def test_metadata_service_answers_as_ecs_does(sandbox):
    import requests

    proxies = {"http": sandbox.metadata_proxy}
    base = "http://100.100.100.200/latest"
    token = requests.put(f"{base}/api/token", proxies=proxies, timeout=5,
                         headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "60"})
    assert token.status_code == 200 and len(token.text) > 20
    roles = f"{base}/meta-data/ram/security-credentials/"
    assert requests.get(roles, proxies=proxies, timeout=5).status_code == 404  # no role yet
    sandbox.metadata.role = "ecs-role"
    try:
        listed = requests.get(roles, proxies=proxies, timeout=5,
                              headers={"X-aliyun-ecs-metadata-token": token.text})
        assert listed.text == "ecs-role"
        bad = requests.get(roles + "ecs-role", proxies=proxies, timeout=5,
                           headers={"X-aliyun-ecs-metadata-token": "forged"})
        assert bad.status_code == 401
        creds = requests.get(roles + "ecs-role", proxies=proxies, timeout=5).json()
    finally:
        sandbox.metadata.role = ""
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("STS.")
    auth = oss2.StsAuth(creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"])
    oss2.Bucket(auth, sandbox.host, DEFAULT_BUCKET).put_object("metadata-probe", b"ok")


@pytest.mark.parametrize("role, memory_mb", [("no-oss", 384), ("not-for-fc", 448)])
def test_a_function_role_that_cannot_use_the_bucket_is_one_error_at_deploy(
        sandbox, runtime, clean_env, tmp_path, monkeypatch, role, memory_mb):
    config = sandbox.lithops_config()
    role_arn = f"acs:ram::{sandbox.account_id}:role/{role}"
    config["aliyun_fc"]["role_arn"] = role_arn
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    # A role without OSS in its policy, or one whose trust policy FC is not in.
    monkeypatch.setattr(sandbox, "roles_without_oss", {role_arn} if role == "no-oss" else set())
    monkeypatch.setattr(sandbox, "roles_fc_cannot_assume",
                        {role_arn} if role == "not-for-fc" else set())
    # The package has already run with the usual role (its metadata is in the bucket, so a
    # new size needs no metadata call): a role never seen on the bucket is still checked.
    good = tmp_path / "good.yaml"
    good.write_text(sandbox.config_yaml())
    assert engine.run_map(_square(), [3], engine.MapRequest(
        backend="aliyun_fc", runtime=runtime.deploy_name, package=runtime.package,
        config_file=str(good), timeout_s=60)).values == [9]
    invocations = sandbox.functions.invocations
    request = engine.MapRequest(backend="aliyun_fc", runtime=runtime.deploy_name,
                                package=runtime.package, config_file=str(path),
                                memory_mb=memory_mb, timeout_s=60)
    with pytest.raises(aliyun_credentials.InputProblem) as err:
        engine.run_map(_square(), [1, 2], request)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"the FC function cannot use bucket {DEFAULT_BUCKET} with role_arn {role_arn} ("
        + (f"OSS refused the function's role on bucket {DEFAULT_BUCKET}: AccessDenied)"
           if role == "no-oss" else "this function has no usable RAM role (FC passed no "
           "credentials)"))
    assert (f"allows oss:GetObject, oss:PutObject, oss:DeleteObject on acs:oss:*:*:"
            f"{DEFAULT_BUCKET}/lithops.jobs/* and oss:ListObjects on acs:oss:*:*:"
            f"{DEFAULT_BUCKET}") in message
    assert sandbox.functions.invocations - invocations == 1, "only the deploy's check ran"
