"""Requirement lists: parsing, merging, pinning, module -> distribution, keys, names."""
from __future__ import annotations

import importlib.metadata as md

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from conftest import install_distribution
from fc_magic.backends.lithops_facts import fc_function_name
from fc_magic.requirements import (
    RequirementProblem,
    check_runtime_name,
    format_table_html,
    format_table_text,
    lithops_worker_requirements,
    max_runtime_name_length,
    module_distribution,
    refresh_environment,
    requirements_table,
    resolve_requirements,
)


def v(dist: str) -> str:
    return md.version(dist)


def by_name(reqset):
    return {e.name: e for e in reqset.entries}


# ------------------------------------------------------------------ canonical form and key
def test_key_ignores_order_case_whitespace_and_comments():
    a = resolve_requirements("numpy>=1.26\nPyYAML\nRequests[socks]  # http\n", backend="localhost")
    b = resolve_requirements("# my packages\n\n  requests [SOCKS]\npyyaml\n  NumPy >= 1.26 \n",
                             backend="localhost")
    assert a.lines() == b.lines()
    assert a.key == b.key
    assert "numpy>=1.26" in a.lines()
    assert f"requests[socks]=={v('requests')}" in a.lines()


def test_key_changes_with_content_python_and_backend():
    base = resolve_requirements("numpy>=1.26", backend="localhost", python="3.12")
    assert resolve_requirements("numpy>=1.27", backend="localhost", python="3.12").key != base.key
    assert resolve_requirements("numpy>=1.26", backend="localhost", python="3.10").key != base.key
    assert resolve_requirements("numpy>=1.26", backend="aliyun_fc", python="3.12").key != base.key
    assert resolve_requirements("numpy>=1.26", backend="localhost", python="3.12").key == base.key


def test_key_changes_with_the_lithops_version(monkeypatch):
    # Workers run the client's Lithops: a build for another Lithops is another runtime.
    base = resolve_requirements("humanize", backend="aliyun_fc", python="3.12", pin=False)
    real_version = md.version
    monkeypatch.setattr(md, "version",
                        lambda name: "3.9.0" if name == "lithops" else real_version(name))
    other = resolve_requirements("humanize", backend="aliyun_fc", python="3.12", pin=False)
    assert base.lithops_version == real_version("lithops") and other.lithops_version == "3.9.0"
    assert other.lines() == base.lines()      # only the Lithops version differs ...
    assert other.key != base.key              # ... and that alone changes the key
    monkeypatch.setattr(md, "version", real_version)
    assert resolve_requirements("humanize", backend="aliyun_fc", python="3.12",
                                pin=False).key == base.key


def test_lines_are_sorted_and_carry_lithops_worker_packages():
    rs = resolve_requirements("scikit-learn", backend="aliyun_fc", pin=False)
    assert rs.lines() == sorted(rs.lines())
    lithops = [e.name for e in rs.entries if e.source == "lithops"]
    assert sorted(lithops) == lithops_worker_requirements("aliyun_fc")
    assert rs.user_lines() == ["scikit-learn"]
    assert rs.lithops_version == md.version("lithops")


def test_worker_packages_come_from_lithops_source():
    from lithops.serverless.backends.aliyun_fc import config

    listed = sorted(line.strip() for line in config.REQUIREMENTS_FILE.splitlines() if line.strip())
    assert lithops_worker_requirements("aliyun_fc") == listed
    # A bare local venv has no FC-preinstalled packages: it also needs what
    # Lithops' worker imports unconditionally and FC provides (requests).
    local = lithops_worker_requirements("localhost")
    assert set(listed) < set(local)
    assert "requests" in local
    assert "numpy" not in local  # imported by the worker only under except ImportError


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("body, number, text", [
    ("numpy\nscikit-learn>=\n", 2, "scikit-learn>="),
    ("\n\n# c\nnum py==1\n", 4, "num py==1"),
    ("pandas\n-r other.txt\n", 2, "-r other.txt"),
    ("x[\n", 1, "x["),
])
def test_invalid_line_names_number_and_text(body, number, text):
    with pytest.raises(RequirementProblem) as err:
        resolve_requirements(body, backend="localhost")
    message = str(err.value)
    assert message.startswith(f"line {number}: {text!r}")
    assert "\n" not in message


def test_contradicting_duplicate_lines_are_refused():
    with pytest.raises(RequirementProblem, match=r"line 2: .*contradicts line 1"):
        resolve_requirements("numpy==1.26\nnumpy==2.1", backend="localhost")


def test_compatible_duplicate_lines_are_merged():
    rs = resolve_requirements("numpy>=1.20\nrequests\nNumPy<3\n", backend="localhost")
    assert "numpy<3,>=1.20" in rs.lines()


def test_fc_refuses_a_python_it_does_not_have():
    # 3.11 is no FC runtime; 3.9 is, but Lithops >= 3.8 does not run on it.
    for python in ("3.11", "3.9"):
        with pytest.raises(RequirementProblem, match=rf"^Python {python} cannot run maps on "
                                                     rf"Function Compute: fc_magic supports "
                                                     rf"Python 3\.10 and 3\.12"):
            resolve_requirements("", backend="aliyun_fc", python=python)


# ------------------------------------------------------------------ markers and extras
def test_markers_are_evaluated_for_the_target():
    body = ('pyyaml; python_version < "3.0"\n'
            'requests; sys_platform == "linux"\n'
            'six; python_version >= "3.10"\n')
    rs = resolve_requirements(body, backend="aliyun_fc", python="3.10", pin=False)
    names = by_name(rs)
    assert "pyyaml" not in names
    assert names["requests"].spec == "requests" and names["requests"].source == "declared"
    assert names["six"].source == "declared"
    assert any("does not apply to Python 3.10" in w and "pyyaml" in w for w in rs.warnings)
    # Markers see the target's Python, not this kernel's.
    old = resolve_requirements('tblib; python_version < "3.11"', backend="aliyun_fc",
                               python="3.10", pin=False)
    assert by_name(old)["tblib"].source == "declared"


#: What packaging would say on a Mac with Apple silicon running Python 3.11.
MAC_HOST = {"implementation_name": "cpython", "implementation_version": "3.11.9",
            "os_name": "posix", "platform_machine": "arm64", "platform_release": "23.4.0",
            "platform_system": "Darwin", "platform_version": "Darwin Kernel Version 23.4.0",
            "python_full_version": "3.11.9", "platform_python_implementation": "CPython",
            "python_version": "3.11", "sys_platform": "darwin"}


def test_markers_are_evaluated_for_fc_not_for_the_host(monkeypatch):
    import platform
    import sys

    import packaging.markers

    import fc_magic.requirements as requirements

    host = lambda: dict(MAC_HOST)  # noqa: E731
    monkeypatch.setattr(packaging.markers, "default_environment", host)
    monkeypatch.setattr(requirements, "default_environment", host)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    body = ('humanize; sys_platform == "linux" and platform_machine == "x86_64"\n'
            'pyyaml; sys_platform == "darwin"\n'
            'idna; platform_machine == "arm64"\n'
            'attrs; python_version == "3.10"\n'
            'click; python_version == "3.11"\n'
            'jinja2; platform_system == "Linux" and os_name == "posix"\n')
    fc = by_name(resolve_requirements(body, backend="aliyun_fc", python="3.10", pin=False))
    # FC is Linux x86_64 with the target's Python, whatever machine resolves the list.
    assert {n for n, e in fc.items() if e.source == "declared"} == {"humanize", "attrs", "jinja2"}
    # The same host faked for localhost (which runs here): the host's platform applies,
    # so the fake is really in effect, and the Python is still the target's.
    local = by_name(resolve_requirements(body, backend="localhost", python="3.10", pin=False))
    assert {n for n, e in local.items() if e.source == "declared"} == {"pyyaml", "idna", "attrs"}


def test_extras_and_urls_are_kept_canonically():
    url = "https://example.com/mypkg-1.0-py3-none-any.whl#sha256=" + "ab" * 32
    rs = resolve_requirements(f"Requests[Socks , Security]>=2\nmypkg @ {url}\n",
                              backend="localhost")
    lines = rs.lines()
    assert "requests[security,socks]>=2" in lines
    assert f"mypkg @ {url}" in lines
    rows = dict((p, s) for p, s, _ in requirements_table(rs))
    assert rows["requests[security,socks]"] == ">=2"
    assert rows["mypkg"] == f"@ {url}"


# ------------------------------------------------------------------ capture -> distributions
MISMATCHED = {"sklearn": "scikit-learn", "PIL": "Pillow", "yaml": "PyYAML",
              "Crypto": "pycryptodome", "bs4": "beautifulsoup4", "nacl": "PyNaCl"}


@pytest.mark.parametrize("module, dist", sorted(MISMATCHED.items()))
def test_module_maps_to_its_real_distribution(module, dist):
    from packaging.utils import canonicalize_name

    assert module_distribution(module).name == canonicalize_name(dist)


def test_captured_modules_are_pinned_to_installed_versions():
    modules = ["sklearn.linear_model", "PIL.Image", "yaml", "Crypto.Cipher.AES", "bs4", "nacl"]
    rs = resolve_requirements("", modules, backend="localhost")
    names = by_name(rs)
    for dist in MISMATCHED.values():
        from packaging.utils import canonicalize_name
        entry = names[canonicalize_name(dist)]
        assert entry.source == "captured"
        assert entry.spec == f"{canonicalize_name(dist)}=={v(dist)}"
    unpinned = resolve_requirements("", modules, backend="localhost", pin=False)
    assert "scikit-learn" in unpinned.user_lines()


def test_declared_pin_wins_over_capture_with_a_warning():
    rs = resolve_requirements("numpy==1.26", ["numpy", "sklearn"], backend="localhost")
    entry = by_name(rs)["numpy"]
    assert entry.spec == "numpy==1.26" and entry.source == "declared"
    [warning] = [w for w in rs.warnings if w.startswith("numpy:")]
    assert "==1.26" in warning and v("numpy") in warning and "declared" in warning


def test_excluded_modules(tmp_path):
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    modules = ["os.path", "json", "collections.abc", "__future__.annotations", "helpers",
               "mypkg.sub", "IPython.display", "ipykernel", "ipywidgets", "jupyter_client",
               "jupyter_core.paths", "fc_magic.engine", "lithops", "yaml"]
    rs = resolve_requirements("", modules, backend="localhost", local_dir=str(tmp_path),
                              pin=False)
    assert rs.user_lines() == ["pyyaml"]
    assert not rs.warnings


def test_unknown_modules_get_one_warning_and_no_guess():
    rs = resolve_requirements("", ["surely_not_installed_x", "also_missing_y.sub", "yaml"],
                              backend="localhost", pin=False)
    assert rs.user_lines() == ["pyyaml"]
    [warning] = rs.warnings
    assert "also_missing_y, surely_not_installed_x" in warning


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A folder on sys.path for real (empty) distributions; metadata re-read around it."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    refresh_environment()
    yield site
    monkeypatch.undo()
    refresh_environment()


def test_a_namespace_shared_by_several_distributions_is_followed_down(fake_site):
    install_distribution(fake_site, "nsdemo-alpha", ["nsdemo/alpha/__init__.py"])
    install_distribution(fake_site, "nsdemo-beta", ["nsdemo/beta/__init__.py",
                                                    "nsdemo/beta/io.py"])
    # The deeper path is installed by exactly one: that one, and nothing to warn about
    # (`from nsdemo.beta import Reader` names an attribute of nsdemo.beta: the same owner).
    rs = resolve_requirements("", ["nsdemo.beta.io", "nsdemo.alpha.Reader"],
                              backend="localhost", pin=False)
    assert rs.user_lines() == ["nsdemo-alpha", "nsdemo-beta"]
    assert rs.warnings == ()
    # `import nsdemo` alone: both install the namespace; the choice is by name and said so.
    tie = resolve_requirements("", ["nsdemo"], backend="localhost", pin=False)
    assert tie.user_lines() == ["nsdemo-alpha"]
    [note] = tie.warnings
    assert "nsdemo-alpha, nsdemo-beta" in note and "name order" in note


def test_a_namespace_module_nobody_installs_is_said_never_guessed(fake_site):
    install_distribution(fake_site, "nsdemo-alpha", ["nsdemo/alpha/__init__.py"])
    install_distribution(fake_site, "nsdemo-beta", ["nsdemo/beta/__init__.py"])
    rs = resolve_requirements("", ["nsdemo.gamma.files", "yaml"], backend="localhost",
                              pin=False)
    assert rs.user_lines() == ["pyyaml"]
    assert rs.warnings == ("no installed distribution provides nsdemo.gamma; not added "
                           "(install it here or declare its package in %%fc_runtime)",)
    # One distribution in the namespace is no better a guess than two.
    owner = module_distribution("nsdemo.gamma")
    assert owner.name is None and owner.missing == "nsdemo.gamma"


def test_two_distributions_installing_the_same_module_are_a_said_choice(fake_site):
    install_distribution(fake_site, "dupmod-two", ["dupmod/__init__.py"])
    install_distribution(fake_site, "dupmod-one", ["dupmod/__init__.py", "dupmod/extra.py"])
    owner = module_distribution("dupmod.thing")
    assert owner.name == "dupmod-one"
    assert "dupmod-one, dupmod-two" in owner.note and "name order" in owner.note
    assert module_distribution("dupmod.extra").note is None


# ------------------------------------------------------------------ runtime names
def test_name_limit_comes_from_lithops_naming():
    limit = max_runtime_name_length()
    longest = "r" * limit
    assert check_runtime_name(longest) == longest
    assert len(fc_function_name(f"{longest}-0123abcd", 32768)) == 64
    assert len(fc_function_name(f"{longest}x-0123abcd", 128)) == 65
    with pytest.raises(RequirementProblem) as err:
        check_runtime_name(longest + "x")
    assert f"at most {limit}" in str(err.value) and "64" in str(err.value)


@pytest.mark.parametrize("name", ["1rt", "-rt", "my rt", "rt.v2", "rté", ""])
def test_invalid_names_are_refused(name):
    with pytest.raises(RequirementProblem):
        check_runtime_name(name)


@pytest.mark.parametrize("name", ["my_rt", "_x", "RT-2"])
def test_valid_names(name):
    assert check_runtime_name(name) == name


# ------------------------------------------------------------------ display
def test_table_text_and_html():
    rs = resolve_requirements("numpy>=1.26\n", ["yaml"], backend="localhost")
    rows = requirements_table(rs)
    assert ("numpy", ">=1.26", "declared") in rows
    assert ("pyyaml", f"=={v('PyYAML')}", "captured") in rows
    assert ("cloudpickle", f"=={v('cloudpickle')}", "lithops") in rows
    text = format_table_text(rows)
    assert text.splitlines()[0].split() == ["package", "version", "source"]
    assert len(text.splitlines()) == len(rows) + 2
    html = format_table_html([("a<b", "<2", "declared")])
    assert "a&lt;b" in html and "&lt;2" in html and "<b" not in html.replace("<tbody", "")


# ------------------------------------------------------------------ %%fc_runtime through the shell
def runtime_cell(ip, line, body):
    result = ip.run_cell(f"%%fc_runtime {line}\n{body}", store_history=True)
    return result.error_in_exec


def nothing_stored(fc, tmp_path):
    runtimes = tmp_path / "cache" / "runtimes"
    return fc.current_runtime is None and (not runtimes.exists() or not any(runtimes.iterdir()))


def test_cell_with_an_invalid_line_names_it_and_stores_nothing(ip, fc, tmp_path):
    assert ip.find_cell_magic("fc_runtime") is not None
    error = runtime_cell(ip, "my_rt", "numpy>=1.26\n# tools\nscikit-learn>=\n")
    assert type(error) is UsageError
    message = str(error)
    assert message.startswith("%%fc_runtime: line 3: 'scikit-learn>='")
    assert "\n" not in message
    assert nothing_stored(fc, tmp_path)


@pytest.mark.parametrize("name, says", [
    ("1st", "starting with a letter or '_'"),
    ("my.rt", "letters, digits, '_' and '-'"),
])
def test_cell_with_an_invalid_name_is_refused(ip, fc, tmp_path, name, says):
    error = runtime_cell(ip, name, "six\n")
    assert type(error) is UsageError
    assert str(error).startswith(f"%%fc_runtime: runtime name {name!r} is not valid")
    assert says in str(error)
    assert nothing_stored(fc, tmp_path)


def test_cell_with_a_too_long_name_says_the_limit(ip, fc, tmp_path):
    limit = max_runtime_name_length()
    error = runtime_cell(ip, "n" * (limit + 1), "six\n")
    assert type(error) is UsageError
    assert f"at most {limit} fit" in str(error) and "64" in str(error)
    assert nothing_stored(fc, tmp_path)


def test_no_pin_leaves_unversioned_lines_unpinned(ip, fc, fake_build):
    with capture_output() as shown:
        ip.run_cell_magic("fc_runtime", "loose_rt --no-pin", "PyYAML\nhumanize>=4\n")
    reqs = fake_build[-1]
    assert "pyyaml" in reqs.user_lines() and "humanize>=4" in reqs.user_lines()
    assert not any(line.startswith("pyyaml==") for line in reqs.lines())
    assert fc.current_runtime.requirements == tuple(reqs.lines())
    assert "pyyaml==" not in shown.stdout
    # Without --no-pin the same cell pins the unversioned line to this kernel's version
    # (a declared specifier is kept as written) and is therefore another runtime.
    with capture_output():
        ip.run_cell_magic("fc_runtime", "loose_rt", "PyYAML\nhumanize>=4\n")
    pinned = fake_build[-1]
    assert f"pyyaml=={v('pyyaml')}" in pinned.user_lines() and "humanize>=4" in pinned.user_lines()
    assert pinned.key != reqs.key and fc.current_runtime.key == pinned.key
