"""Requirement lines case by case: parsing, URL pins, merging, markers, tables (pure, fast)."""
from __future__ import annotations

import hashlib
import importlib.metadata as md

import pytest

from fc_magic.requirements import (
    RequirementProblem,
    check_runtime_name,
    format_table_html,
    format_table_text,
    lithops_worker_requirements,
    max_runtime_name_length,
    notebook_requirements,
    parse_declared,
    pinned_url,
    requirements_table,
    resolve_requirements,
    target_environment,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SHA = "ab" * 32


def user(declared: str, modules=(), **kw) -> list[str]:
    kw.setdefault("pin", False)
    return resolve_requirements(declared, modules, backend="localhost", **kw).user_lines()


def problem(declared: str, **kw) -> str:
    with pytest.raises(RequirementProblem) as err:
        resolve_requirements(declared, backend="localhost", **kw)
    message = str(err.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ parsing
def test_lines_are_numbered_as_an_editor_numbers_them():
    parsed = parse_declared("# tools\r\nnumpy\rsix  # compat\n\n  PyYAML>=6 \f\n")
    assert [(n, text, str(req)) for n, text, req in parsed] == [
        (2, "numpy", "numpy"), (3, "six  # compat", "six"), (5, "PyYAML>=6", "PyYAML>=6")]
    assert parse_declared("") == [] and parse_declared(None) == []


def test_a_hash_sign_starts_a_comment_only_after_whitespace():
    [(_, _, req)] = parse_declared("six # the compat shim\n")
    assert str(req) == "six"
    assert parse_declared("#six\n") == []
    assert problem("six#shim\n").startswith("line 1: 'six#shim' is not a valid requirement")


def test_pip_options_and_environment_placeholders_are_refused_naming_the_line():
    assert problem("six\n  --index-url https://x\n") == (
        "line 2: '--index-url https://x' is a pip option, not a requirement; write one "
        "PEP 508 requirement per line (e.g. numpy>=1.26)")
    assert problem("pkg @ https://h/${TOKEN}/p.whl#sha256=" + SHA) == (
        "line 1: 'pkg @ https://h/${TOKEN}/p.whl#sha256=" + SHA + "' contains ${...}, which "
        "the installer would fill in from the environment; write the value itself")


def test_an_invalid_line_says_why_in_one_line():
    message = problem("\n\nnumpy>=>1\n")
    assert message.startswith("line 3: 'numpy>=>1' is not a valid requirement (")
    assert message.endswith("); write e.g. numpy>=1.26 or scikit-learn==1.5.2")


# ------------------------------------------------------------------ URL requirements
def test_download_urls_need_their_sha256():
    good = f"https://files.example/p-1.0-py3-none-any.whl#sha256={SHA.upper()}"
    assert pinned_url(good, "here") == good
    for bad in ("https://files.example/p.whl", "http://files.example/p.whl#sha256=abc",
                "https://files.example/p.whl#md5=" + "a" * 32):
        with pytest.raises(RequirementProblem, match=r"^here: a download URL needs its file's "
                                                     r"hash.*append #sha256=<hex>"):
            pinned_url(bad, "here")


def test_vcs_urls_need_a_full_commit():
    for good in (f"git+https://h/r.git@{COMMIT}", f"git+ssh://git@h/r.git@{COMMIT.upper()}",
                 f"hg+https://h/r@{COMMIT}"):
        assert pinned_url(good, "here") == good
    # Only the last path segment carries the revision.
    assert pinned_url(f"git+https://h/team@corp/r.git@{COMMIT}", "here").endswith(COMMIT)
    for bad in ("git+https://h/r.git", "git+https://h/r.git@main", f"git+https://h/r.git@{COMMIT[:12]}",
                f"git+https://h@{COMMIT}/r.git"):
        with pytest.raises(RequirementProblem, match=r"^here: a VCS URL needs a full commit id"):
            pinned_url(bad, "here")


def test_other_schemes_are_refused():
    with pytest.raises(RequirementProblem) as err:
        pinned_url("ftp://h/p.whl", "line 4: 'x'")
    assert str(err.value) == ("line 4: 'x': URL scheme 'ftp' is not supported; use https:// "
                              "with #sha256=, git+https:// with a commit, or file://")


def test_a_local_file_gets_its_sha256_and_an_absolute_path(tmp_path, monkeypatch):
    wheel = tmp_path / "p-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    digest = hashlib.sha256(b"wheel bytes").hexdigest()
    assert pinned_url(f"file://{wheel}", "w") == f"file://{wheel}#sha256={digest}"
    assert pinned_url(f"file://{wheel}#sha256={digest}", "w") == f"file://{wheel}#sha256={digest}"
    assert pinned_url(f"file://{wheel}#egg=p", "w") == f"file://{wheel}#egg=p&sha256={digest}"
    monkeypatch.chdir(tmp_path)
    assert pinned_url(wheel.name, "w") == f"file://{wheel}#sha256={digest}"
    with pytest.raises(RequirementProblem) as err:
        pinned_url(f"file://{wheel}#sha256={SHA}", "w")
    assert str(err.value) == (f"w: the file's sha256 is {digest}, not the #sha256= of the "
                              f"line; fix the hash or the file")
    with pytest.raises(RequirementProblem) as err:
        pinned_url(f"file://{tmp_path}/missing.whl", "w")
    assert str(err.value) == (f"w: cannot read {tmp_path}/missing.whl (No such file or "
                              f"directory); check the path")
    with pytest.raises(RequirementProblem) as err:
        pinned_url(f"file://{tmp_path}", "w")
    assert str(err.value).startswith(f"w: a folder can change while the cell stays the same; "
                                     f"build a wheel (pip wheel {tmp_path} -w DIR)")


def test_a_url_line_in_a_cell_is_pinned_and_named_redacted(tmp_path):
    wheel = tmp_path / "p-1.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    assert user(f"p @ file://{wheel}\n") == [f"p @ file://{wheel}#sha256={digest}"]
    message = problem("six\np @ https://user:hunter2secret@h/p.whl\n")
    assert message.startswith("line 2: ") and "hunter2secret" not in message


# ------------------------------------------------------------------ merging and pinning
def test_canonical_lines_sort_extras_and_specifiers_and_keep_markers_apart_from_urls():
    assert user("Requests[Socks,Security]>=2,<3\n") == ["requests[security,socks]<3,>=2"]
    assert user(f"pkg @ git+https://h/r.git@{COMMIT}\n") == [f"pkg @ git+https://h/r.git@{COMMIT}"]


def test_duplicate_lines_merge_extras_and_specifiers():
    assert user("requests[socks]>=2\nRequests[security]<3\n") == [
        "requests[security,socks]<3,>=2"]
    assert user("six==1.16.*\nsix>=1.16\n") == ["six==1.16.*,>=1.16"]


def test_exact_pins_merge_when_the_other_line_allows_them():
    assert user("six==1.16.0\nsix>=1.0\n") == ["six==1.16.0,>=1.0"]
    assert user("pkg==2.0rc1\npkg>=1\n") == ["pkg==2.0rc1,>=1"]     # a pre-release pin
    assert problem("pkg===1.0\npkg>=2\n").startswith("line 2: pkg>=2 contradicts line 1")


def test_contradicting_lines_name_both_origins():
    assert problem("six==1.16.0\n\nsix>=1.17\n") == (
        "line 3: six>=1.17 contradicts line 1 (==1.16.0); keep one line per package")
    message = problem("six\nsix<1\nsix==2\n")
    assert message.startswith("line 3: six==2 contradicts line 1+line 2 (<1)")


def test_url_lines_for_one_package_must_agree():
    url = f"git+https://h/r.git@{COMMIT}"
    assert user(f"pkg @ {url}\nPKG @ {url}\n") == [f"pkg @ {url}"]
    for second in ("pkg>=1", f"pkg @ git+https://h/other.git@{COMMIT}"):
        assert problem(f"pkg @ {url}\n{second}\n") == (
            "line 2: pkg is already declared on line 1 differently; keep one line per package")


def test_pinning_uses_the_installed_version_and_keeps_what_is_declared():
    six = md.version("six")
    assert user("six\nPyYAML>=5\nabsent-dist-q\n", pin=True) == [
        "absent-dist-q", "pyyaml>=5", f"six=={six}"]


def test_markers_apply_for_the_target_and_skipped_lines_are_said():
    rs = resolve_requirements("six; python_version < '3.0'\npyyaml; sys_platform == 'linux'\n",
                              backend="aliyun_fc", pin=False, python="3.10")
    assert rs.user_lines() == ["pyyaml"]
    assert rs.warnings == ("line 1: \"six; python_version < '3.0'\" does not apply to Python "
                           "3.10 on aliyun_fc; skipped",)


def test_target_environment_is_the_workers():
    fc = target_environment("aliyun_fc", "3.10")
    assert fc["python_version"] == "3.10" and fc["python_full_version"] == "3.10.0"
    assert (fc["sys_platform"], fc["platform_system"], fc["platform_machine"]) == (
        "linux", "Linux", "x86_64")
    assert fc["extra"] == ""
    import platform

    here = target_environment("localhost", platform.python_version().rsplit(".", 1)[0])
    assert here["python_full_version"] == platform.python_version()


def test_fc_refuses_an_unknown_backend_and_python():
    with pytest.raises(RequirementProblem, match=r"^backend 'gcp' is not one of localhost"):
        resolve_requirements("six", backend="gcp")
    with pytest.raises(RequirementProblem) as err:
        lithops_worker_requirements("gcp")
    from fc_magic.backends import BACKENDS

    assert str(err.value) == f"backend 'gcp' is not one of {', '.join(BACKENDS)}"
    with pytest.raises(RequirementProblem):
        resolve_requirements("six", backend="aliyun_fc", python="2.7")


def test_worker_packages_can_be_left_out():
    with_worker = resolve_requirements("", backend="localhost", pin=False)
    alone = resolve_requirements("", backend="localhost", pin=False, worker_packages=False)
    assert alone.lines() == [] and with_worker.lines() != []
    assert {e.source for e in with_worker.entries} == {"lithops"}
    both = resolve_requirements("PyYAML\n", ["six"], backend="localhost", pin=False)
    assert both.user_names() == ["pyyaml", "six"]
    assert set(both.names()) == {"pyyaml", "six", *with_worker.names()}


# ------------------------------------------------------------------ captured modules
def test_captured_modules_skip_stdlib_main_relative_client_only_and_blank():
    rs = resolve_requirements("", ["json", "__main__", "__main__.helper", ".rel", "", "  ",
                                   "IPython.display", "ipywidgets", "lithops", "jupyter_client",
                                   "fc_magic.capture", "yaml"],
                              backend="localhost", pin=False)
    assert rs.user_lines() == ["pyyaml"] and rs.warnings == ()


def test_canonical_lines_keep_markers_apart_from_urls():
    from packaging.requirements import Requirement

    from fc_magic.requirements import canonical_line

    assert canonical_line(Requirement("Six>=1 ; python_version<'3.11'")) == (
        "six>=1; python_version < \"3.11\"")
    assert canonical_line(Requirement(f"pkg @ git+https://h/r.git@{COMMIT} ; os_name=='nt'")) == (
        f"pkg @ git+https://h/r.git@{COMMIT} ; os_name == \"nt\"")


def test_a_declared_version_the_kernel_does_not_run_is_a_warning():
    six = md.version("six")
    rs = resolve_requirements("six<1.0\n", ["six"], backend="localhost", pin=False)
    assert rs.user_lines() == ["six<1.0"]
    assert rs.warnings == (f"six: line 1 asks for <1.0 but this kernel imports six from six "
                           f"{six}; the declared <1.0 is used, so results may differ from the "
                           f"notebook's",)
    sub = resolve_requirements("six<1.0\n", ["six.moves"], backend="localhost", pin=False)
    assert "this kernel imports six from six" in sub.warnings[0]
    agreeing = resolve_requirements(f"six=={six}\n", ["six"], backend="localhost", pin=False)
    assert agreeing.warnings == ()


def test_modules_nobody_installs_are_named_once_sorted():
    rs = resolve_requirements("", ["zz_absent_q.sub", "aa_absent_q", "yaml"],
                              backend="localhost", pin=False)
    assert rs.user_lines() == ["pyyaml"]
    assert rs.warnings == ("no installed distribution provides aa_absent_q, zz_absent_q; "
                           "not added (install it here or declare its package in "
                           "%%fc_runtime)",)


def test_notebook_requirements_merge_notebooks_and_their_warnings(tmp_path):
    import nbformat

    for name, cells in (("a.ipynb", ["import yaml\nimport helper_q\n", "def (\n"]),
                        ("b.ipynb", ["import six\n"])):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, str(tmp_path / name))
    (tmp_path / "helper_q.py").write_text("x = 1\n")
    rs = notebook_requirements([str(tmp_path / "a.ipynb"), str(tmp_path / "b.ipynb")], pin=False)
    assert rs.lines() == ["pyyaml", "six"]
    [warning] = rs.warnings
    assert warning.startswith("a.ipynb code cell 2 skipped: invalid syntax")
    pinned = notebook_requirements([str(tmp_path / "b.ipynb")])      # pinned by default
    assert pinned.lines() == [f"six=={md.version('six')}"]


# ------------------------------------------------------------------ names
def test_runtime_name_messages():
    limit = max_runtime_name_length()
    with pytest.raises(RequirementProblem) as err:
        check_runtime_name("")
    assert str(err.value) == "a runtime NAME is required, e.g. %%fc_runtime my_rt"
    with pytest.raises(RequirementProblem) as err:
        check_runtime_name("a.b")
    assert str(err.value) == ("runtime name 'a.b' is not valid: use letters, digits, '_' and "
                              f"'-', starting with a letter or '_' (at most {limit} "
                              "characters), e.g. my_rt")
    with pytest.raises(RequirementProblem) as err:
        check_runtime_name("x" * (limit + 1))
    assert str(err.value) == (
        f"runtime name {'x' * (limit + 1)!r} has {limit + 1} characters; at most {limit} fit, "
        "because Lithops names the function 'lithops-worker-{NAME}-{key8}-v{version}-{hash}' "
        "and Function Compute allows 64; choose a shorter name")


# ------------------------------------------------------------------ tables
def test_table_rows_show_extras_urls_and_any():
    rs = resolve_requirements(f"Requests[socks]>=2\nsix\npkg @ git+https://h/r.git@{COMMIT}\n",
                              backend="localhost", pin=False, worker_packages=False)
    assert requirements_table(rs) == [
        ("pkg", f"@ git+https://h/r.git@{COMMIT}", "declared"),
        ("requests[socks]", ">=2", "declared"),
        ("six", "any", "declared")]


def test_text_table_columns_line_up():
    text = format_table_text([("numpy", "==2.0", "declared"), ("a", "any", "lithops")])
    assert text.splitlines() == ["package  version  source",
                                 "-------  -------  --------",
                                 "numpy    ==2.0    declared",
                                 "a        any      lithops"]


def test_html_table_escapes_every_cell_and_codes_the_first_two():
    two = format_table_html([("a", "1", "x"), ("b", "2", "y")])
    assert "</tr><tr>" in two and two.count("<tr>") == 3
    html = format_table_html([("a<b", "<2", "de&clared")])
    assert html == (
        "<table class='fc-magic-requirements'><thead><tr>"
        "<th style='text-align:left'>package</th><th style='text-align:left'>version</th>"
        "<th style='text-align:left'>source</th></tr></thead><tbody><tr>"
        "<td style='text-align:left'><code>a&lt;b</code></td>"
        "<td style='text-align:left'><code>&lt;2</code></td>"
        "<td style='text-align:left'>de&amp;clared</td></tr></tbody></table>")


def test_local_file_names_are_taken_literally_and_fragments_kept(tmp_path, monkeypatch):
    odd = tmp_path / "p%41 x-1.0-py3-none-any.whl"      # a '%' and a space in the name
    odd.write_bytes(b"odd")
    digest = hashlib.sha256(b"odd").hexdigest()
    monkeypatch.chdir(tmp_path)
    # A bare path is the file's own name, with or without a fragment.
    assert pinned_url(odd.name, "w") == f"file://{odd}#sha256={digest}"
    assert pinned_url(f"{odd.name}#sha256={digest}", "w") == f"file://{odd}#sha256={digest}"
    # A file:// URL is percent-encoded, and stays as written.
    quoted = f"file://{tmp_path}/p%2541%20x-1.0-py3-none-any.whl"
    assert pinned_url(quoted, "w") == f"{quoted}#sha256={digest}"
    assert pinned_url(f"{quoted}#egg=p&subdirectory=a/b", "w") == (
        f"{quoted}#egg=p&sha256={digest}&subdirectory=a/b")


# ------------------------------------------------------------------ modules -> distributions
@pytest.fixture
def installed(monkeypatch):
    """Fakes what is installed: top-level name -> distributions, each one's files
    (modules and folders as '/'-paths; None for an install without a file list) and
    versions; the real environment is never read."""
    from fc_magic import requirements as reqs

    def install(tops: dict, layouts: dict, versions: dict | None = None) -> None:
        files = {d: None if v is None else reqs._Layout(frozenset(v[0]), frozenset(v[1]))
                 for d, v in layouts.items()}
        monkeypatch.setattr(reqs, "_packages_distributions", lambda: tops)
        monkeypatch.setattr(reqs, "_distribution_layout", lambda dist: files.get(dist))
        monkeypatch.setattr(reqs, "_installed_version", lambda name: (versions or {}).get(name))
        # What is faked never changes; the real refresh would clear the fakes' caches.
        monkeypatch.setattr(reqs, "_refresh_if_changed", lambda: None)
    return install


def test_a_module_nobody_installs_is_missing_by_its_top_name(installed):
    from fc_magic.requirements import ModuleOwner, module_distribution

    installed({}, {})
    assert module_distribution("ghost_q.sub") == ModuleOwner("ghost_q.sub", None,
                                                             missing="ghost_q")


def test_namespace_portions_are_followed_to_the_distribution_of_the_module(installed):
    from fc_magic.requirements import ModuleOwner, module_distribution

    installed({"google": ("protobuf", "Google_Auth")},
              {"protobuf": ({"google/protobuf", "google/protobuf/message"},
                            {"google", "google/protobuf"}),
               "Google_Auth": ({"google/auth"}, {"google", "google/auth"})})
    both = ("google-auth", "protobuf")
    assert module_distribution("google.protobuf.message") == ModuleOwner(
        "google.protobuf.message", "protobuf", both)
    assert module_distribution("google.auth.transport") == ModuleOwner(
        "google.auth.transport", "google-auth", both)
    # Below a bare namespace folder nobody installs `colab`: no guess, the name is missing.
    assert module_distribution("google.colab.files") == ModuleOwner(
        "google.colab.files", None, both, missing="google.colab")


def _choice(module: str, chosen: str, canon: tuple, reason: str) -> str:
    others = ", ".join(c for c in canon if c != chosen)
    return (f"module {module!r} is installed by several distributions ({', '.join(canon)}); "
            f"chose {chosen}, first in name order, because {reason} as the others do "
            f"(not {others}); declare the one you need in %%fc_runtime")


def test_a_choice_between_distributions_is_explained_with_its_reason(installed):
    from fc_magic.requirements import ModuleOwner, module_distribution

    canon = ("alpha", "beta-pkg", "gamma")
    installed({"tests": ("gamma", "Beta_Pkg", "alpha"), "nsp": ("gamma", "Beta_Pkg", "alpha"),
               "edit": ("gamma", "Beta_Pkg", "alpha")},
              {"alpha": ({"tests"}, {"tests", "nsp", "nsp/data"}),
               "Beta_Pkg": ({"tests"}, {"tests", "nsp"}),
               "gamma": ({"tests/other"}, {"tests"}),
               "edit": None})
    # Two install the module itself (gamma only a file below it).
    assert module_distribution("tests.x") == ModuleOwner(
        "tests.x", "alpha", canon, _choice("tests.x", "alpha", canon, "it installs tests"))
    # Two install files under the folder and no one the module.
    assert module_distribution("nsp") == ModuleOwner(
        "nsp", "alpha", canon, _choice("nsp", "alpha", canon, "it installs files under nsp/"))
    # No file list names it: every distribution that declares the name is a candidate.
    installed({"edit": ("Beta_Pkg", "alpha")}, {"Beta_Pkg": None, "alpha": None})
    assert module_distribution("edit") == ModuleOwner(
        "edit", "alpha", ("alpha", "beta-pkg"),
        _choice("edit", "alpha", ("alpha", "beta-pkg"), "all of them declare it"))


def test_captured_modules_map_through_the_installed_files(installed):
    installed({"fakepre": ("FakePre",), "zeta": ("zeta",), "kernelish": ("ipykernel",),
               "nsp": ("nsp-portion",)},
              {"FakePre": ({"fakepre"}, set()), "zeta": ({"zeta"}, set()),
               "ipykernel": ({"kernelish"}, set()), "nsp-portion": ({"nsp/other"}, {"nsp"})},
              {"fakepre": "2.0rc1", "zeta": "1.0"})
    kw = dict(backend="localhost", pin=False, worker_packages=False)
    # The kernel's pre-release satisfies >=1: no warning about a differing version.
    rs = resolve_requirements("FakePre>=1\n", ["fakepre", "zeta"], **kw)
    assert (rs.user_lines(), rs.warnings, rs.backend) == (["fakepre>=1", "zeta"], (),
                                                          "localhost")
    # A client-only owner is left out, and the modules after it are still mapped;
    # a client-only import name needs no installed owner at all.
    rs = resolve_requirements("", ["kernelish", "zeta", "IPython.core.display"], **kw)
    assert (rs.user_lines(), rs.warnings) == (["zeta"], ())
    # `import nsp.ghost` says more than `import nsp`: only the specific name is mapped.
    rs = resolve_requirements("", ["nsp", "nsp.ghost"], **kw)
    assert rs.user_lines() == []
    assert rs.warnings == ("no installed distribution provides nsp.ghost; not added (install "
                           "it here or declare its package in %%fc_runtime)",)


def test_installed_metadata_is_read_again_only_when_a_path_folder_changes(tmp_path, monkeypatch):
    import os
    import sys

    from fc_magic import requirements as reqs

    reads = []
    monkeypatch.setattr(reqs, "refresh_environment", lambda: reads.append(1))
    monkeypatch.setattr(reqs, "_stamp", ())
    site, here = tmp_path / "site", tmp_path / "cwd"
    site.mkdir()
    here.mkdir()
    monkeypatch.chdir(here)
    # A folder that does not exist is skipped, not the end of the scan; "" is the cwd.
    monkeypatch.setattr(sys, "path", [str(tmp_path / "gone"), str(site), ""])
    reqs._refresh_if_changed()
    assert len(reads) == 1
    reqs._refresh_if_changed()
    assert len(reads) == 1
    os.utime(site, ns=(1, 1))
    reqs._refresh_if_changed()
    assert len(reads) == 2
    os.utime(here, ns=(1, 1))
    reqs._refresh_if_changed()
    assert len(reads) == 3


def test_markers_see_fc_not_a_different_host(monkeypatch):
    from fc_magic import requirements as reqs

    host = {"implementation_name": "pypy", "implementation_version": "7.3.16",
            "os_name": "nt", "platform_machine": "AMD64", "platform_release": "10",
            "platform_system": "Windows", "platform_version": "10.0.19045",
            "python_full_version": "3.10.14", "platform_python_implementation": "PyPy",
            "python_version": "3.10", "sys_platform": "win32"}
    monkeypatch.setattr(reqs, "default_environment", lambda: dict(host))
    fc = target_environment("aliyun_fc", "3.12")
    assert {k: fc[k] for k in host if k not in ("implementation_version", "platform_release",
                                                 "platform_version")} == {
        "implementation_name": "cpython", "os_name": "posix", "platform_machine": "x86_64",
        "platform_system": "Linux", "python_full_version": "3.12.0",
        "platform_python_implementation": "CPython", "python_version": "3.12",
        "sys_platform": "linux"}
    rs = resolve_requirements("six; implementation_name == 'cpython' and os_name == 'posix'\n"
                              "pyyaml; platform_python_implementation == 'PyPy'\n",
                              backend="aliyun_fc", python="3.12", pin=False)
    assert rs.user_lines() == ["six"]
    # localhost workers run on this host: its markers stay.
    assert target_environment("localhost", "3.10") == {**host, "extra": ""}


def test_an_unknown_backend_is_named_with_the_choices():
    from fc_magic.backends import BACKENDS

    with pytest.raises(RequirementProblem) as err:
        resolve_requirements("six", backend="gcp")
    assert str(err.value) == f"backend 'gcp' is not one of {', '.join(BACKENDS)}"


def test_an_invalid_line_gives_the_parsers_first_line_as_reason():
    from packaging.requirements import InvalidRequirement, Requirement

    with pytest.raises(InvalidRequirement) as raw:
        Requirement("numpy>=>1")
    reason = str(raw.value).splitlines()[0]
    assert problem("numpy>=>1") == (f"line 1: 'numpy>=>1' is not a valid requirement "
                                    f"({reason}); write e.g. numpy>=1.26 or scikit-learn==1.5.2")


def test_lithops_own_imports_never_add_a_client_only_distribution():
    from fc_magic.requirements import _lithops_worker_imports, is_client_only

    dists = _lithops_worker_imports()
    assert dists and not [d for d in dists if is_client_only(d)]


# ------------------------------------------------ installed names, read from RECORDs
def test_module_owners_match_the_standard_librarys_answer_for_this_environment():
    from fc_magic import requirements as reqs

    reqs._packages_distributions.cache_clear()
    ours = reqs._packages_distributions()
    theirs = {mod: tuple(sorted(set(d), key=str.lower))
              for mod, d in md.packages_distributions().items()}
    assert ours == theirs and "yaml" in ours and "IPython" in ours


def test_top_level_names_come_from_record_without_looking_for_each_file(tmp_path):
    from fc_magic import requirements as reqs

    info = tmp_path / "demo_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-dist\nVersion: 1.0\n")
    (info / "RECORD").write_text(
        "demo_pkg/__init__.py,,\ndemo_pkg/sub/x.py,,\ndemo_mod.py,,\n"
        "_demo_ext.cpython-312-x86_64-linux-gnu.so,,\n../../bin/demo,,\n"
        "demo_dist-1.0.dist-info/METADATA,,\n")
    dist = next(md.distributions(path=[str(tmp_path)]))
    # None of the listed files exists: the names are the RECORD's all the same.
    assert reqs._top_level_names(dist) == {"demo_pkg", "demo_mod", "_demo_ext"}
    (info / "top_level.txt").write_text("declared\n")
    assert reqs._top_level_names(dist) == {"declared"}, "top_level.txt wins, as in importlib"
