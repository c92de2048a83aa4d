"""Pre-flight, case by case: what a notebook function needs and what a runtime has.

Pure and fast: functions are defined as a notebook defines them (in a `__main__`
namespace) and checked against runtime entries; nothing is built or invoked.
"""
from __future__ import annotations

import functools
import textwrap

import pytest

from fc_magic.inputs import InputProblem
from fc_magic.preflight import check_function, function_needs, runtime_distributions
from fc_magic.runtime import RuntimeEntry


def notebook(source: str, name: str = "__main__") -> dict:
    namespace = {"__name__": name}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace


def needs(func, **kw) -> dict[str, tuple[str, str | None]]:
    return {n.module: (n.via, n.distribution) for n in function_needs(func, **kw)}


def dists(func, **kw) -> set[str]:
    return {n.distribution for n in function_needs(func, **kw)}


def entry(requirements, *, name="rt", target="local", sizes=(), python="3.12"):
    return RuntimeEntry(name=name, key="0" * 64, target=target, deploy_name=f"{name}-00000000",
                        path="/nonexistent", interpreter=None, package=None,
                        requirements=tuple(requirements), python=python,
                        manifest={"sizes": [[s, 1, None] for s in sizes]})


# ------------------------------------------------------------------ what a function needs
def test_via_says_how_each_module_is_reached():
    nb = notebook("""
        import yaml
        import six as compat
        def helper():
            from bs4 import BeautifulSoup
            return yaml
        def main(x):
            import tblib.pickling_support
            return helper(), compat
    """)
    assert needs(nb["main"]) == {
        "tblib.pickling_support": ("main: import tblib.pickling_support", "tblib"),
        "bs4.BeautifulSoup": ("main: helper: import bs4.BeautifulSoup", "beautifulsoup4"),
        "yaml": ("main: helper: yaml", "pyyaml"),
        "six": ("main: compat", "six"),
    }


def test_stdlib_lithops_and_relative_imports_are_not_needs():
    nb = notebook("""
        import json, os.path
        import lithops
        def f(x):
            import collections.abc
            from . import sibling
            from .pkg import thing
            return json, os.path, lithops, collections
    """)
    assert needs(nb["f"]) == {}


def test_the_most_specific_module_is_kept():
    nb = notebook("""
        import nacl
        def f(x):
            import nacl.secret
            return nacl
    """)
    assert set(needs(nb["f"])) == {"nacl.secret"}


def test_a_module_no_distribution_installs_is_a_need_without_distribution():
    nb = notebook("def f(x):\n    import surely_absent_module_q\n    return x\n")
    assert needs(nb["f"]) == {"surely_absent_module_q": ("f: import surely_absent_module_q",
                                                         None)}
    # ... and is not refused: pre-flight cannot tell which package the user means.
    with caplog_at_debug() as logged:
        assert check_function(nb["f"], entry(["six"])) == function_needs(nb["f"])
    assert "f needs surely_absent_module_q, which no installed distribution provides" in [
        r.getMessage() for r in logged.records]


class caplog_at_debug:
    """The preflight logger's records at DEBUG, without pytest's caplog fixture."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("fc_magic.preflight")
        self.records: list = []
        self.handler = logging.Handler(logging.DEBUG)
        self.handler.emit = self.records.append
        self.level = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


def test_every_need_is_checked_not_only_the_first():
    nb = notebook("""
        import six, yaml
        def f(x):
            import surely_absent_module_q
            return six, yaml
    """)
    # surely_absent (no distribution) and six (installed) come first; yaml is still checked.
    with pytest.raises(InputProblem, match=r"^f needs module 'yaml'"):
        check_function(nb["f"], entry(["six"]))


def test_the_refusal_names_the_top_level_module_of_a_dotted_import():
    nb = notebook("def f(x):\n    from bs4 import BeautifulSoup\n    return BeautifulSoup\n")
    with pytest.raises(InputProblem) as err:
        check_function(nb["f"], entry([]))
    assert str(err.value).startswith(
        "f needs module 'bs4' (via f: import bs4.BeautifulSoup) from distribution beautifulsoup4")


def test_mutually_recursive_functions_are_read_once():
    nb = notebook("""
        def even(n):
            import six
            return n == 0 or odd(n - 1)
        def odd(n):
            import yaml
            return n != 0 and even(n - 1)
        def f(x):
            return even(x)
    """)
    assert dists(nb["f"]) == {"six", "pyyaml"}


def test_via_names_the_path_through_methods_partials_and_library_objects():
    import math
    import types

    nb = notebook("""
        import functools, yaml, numpy
        from yaml import safe_load, YAMLObject
        class Worker:
            def run(self, x):
                import bs4
        def score(x, model):
            import tblib
            return x
        def uses_library(x):
            return safe_load, YAMLObject, numpy.asarray
    """)
    worker = nb["Worker"]()
    assert needs(worker.run)["bs4"] == ("Worker.run: import bs4", "beautifulsoup4")
    part = functools.partial(nb["score"], model=__import__("six"))
    assert needs(part) == {"tblib": ("partial -> score: import tblib", "tblib"),
                           "six": ("partial", "six")}
    assert needs(nb["uses_library"]) == {
        "yaml": ("uses_library: safe_load", "pyyaml"),
        "numpy": ("uses_library: numpy", "numpy")}
    # A notebook function bound to another object by hand is read as itself.
    bound = types.MethodType(nb["score"], math)
    assert needs(bound) == {"tblib": ("score: import tblib", "tblib")}


def test_library_names_captured_alone_say_where_they_come_from():
    import numpy
    import yaml

    nb = notebook("""
        def f(x):
            return LOAD, KIND, ASARRAY
    """)
    nb.update(LOAD=yaml.safe_load, KIND=yaml.YAMLObject, ASARRAY=numpy.asarray)
    assert needs(nb["f"]) == {"yaml": ("f: LOAD", "pyyaml"), "numpy": ("f: ASARRAY", "numpy")}


def test_closures_defaults_and_keyword_defaults_are_followed():
    nb = notebook("""
        import yaml, six, bs4
        def make():
            mod = yaml
            def inner(x, codec=six, *, parser=bs4):
                return mod, codec, parser
            return inner
        f = make()
        def later():
            def uses_unset(x):
                return value
            value = None
            return uses_unset
        g = later()
    """)
    assert needs(nb["f"]) == {"yaml": ("make.<locals>.inner: closure", "pyyaml"),
                              "six": ("make.<locals>.inner: default", "six"),
                              "bs4": ("make.<locals>.inner: default", "beautifulsoup4")}
    assert needs(nb["g"]) == {}


def test_an_empty_closure_cell_is_skipped():
    nb = notebook("""
        def outer():
            def inner(x):
                return later_bound
            yield inner
            later_bound = 1
        f = next(outer())
    """)
    assert needs(nb["f"]) == {}


def test_a_name_not_defined_yet_is_not_a_need():
    nb = notebook("def f(x):\n    return defined_later(x), len(x)\n")
    assert needs(nb["f"]) == {}


def test_decorated_functions_are_followed_to_the_wrapped_one():
    nb = notebook("""
        import functools
        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return fn(*a)
            return wrapper
        @logged
        def f(x):
            import pika
            return x
    """)
    assert dists(nb["f"]) == {"pika"}


def test_library_functions_classes_and_builtins_name_their_module():
    import numpy
    import yaml

    nb = notebook("""
        import yaml, numpy
        from yaml import safe_load, YAMLObject
        def uses_function(x):
            return safe_load(x)
        def uses_class(x):
            return YAMLObject
        def uses_c_function(x):
            return numpy.asarray(x)
    """)
    assert dists(nb["uses_function"]) == {"pyyaml"}
    assert dists(nb["uses_class"]) == {"pyyaml"}
    assert dists(nb["uses_c_function"]) == {"numpy"}
    assert dists(yaml.safe_load) == {"pyyaml"}        # %fc_map yaml.safe_load DATA
    assert dists(numpy.asarray) == {"numpy"}
    assert dists(len) == set()


def test_methods_partials_and_callable_objects():
    nb = notebook("""
        import functools, yaml, six, tblib
        class Worker:
            def __init__(self):
                self.codec = six.moves
            def run(self, x):
                import bs4
                return x
            def __call__(self, x):
                return yaml.safe_load(x)
        def score(x, *, scale):
            return x
        bound = Worker().run
        partial = functools.partial(score, tblib, scale=yaml)
        instance = Worker()
    """)
    assert dists(nb["bound"]) == {"beautifulsoup4", "six", "pyyaml"}   # the object travels too
    assert dists(nb["partial"]) == {"tblib", "pyyaml"}
    assert dists(nb["instance"]) == {"beautifulsoup4", "six", "pyyaml"}


def test_static_class_methods_properties_and_bases_of_a_notebook_class():
    nb = notebook("""
        class Base:
            def shared(self):
                import tblib
        class Tool(Base):
            @staticmethod
            def s():
                import yaml
            @classmethod
            def c(cls):
                import six
            @property
            def p(self):
                return 1
            @p.setter
            def p(self, value):
                import pika
            @p.deleter
            def p(self):
                import bs4
            def __call__(self, x):
                return x
        def f(x):
            return Tool()(x)
    """)
    assert dists(nb["f"]) == {"tblib", "pyyaml", "six", "pika", "beautifulsoup4"}


def test_captured_values_are_read_for_their_types():
    import numpy

    nb = notebook("""
        def f(x):
            return DATA, BIG, NESTED
    """)
    nb["DATA"] = {"a": [1, (numpy.float64(1.0),)], "b": {frozenset({2})}}
    nb["BIG"] = [numpy.int64(1)] + [0] * 200          # big data: only its type (a list)
    nb["NESTED"] = [None]
    nb["NESTED"][0] = nb["NESTED"]                    # a self-referencing list ends
    assert needs(nb["f"]) == {"numpy": ("f: DATA", "numpy")}


def test_a_notebook_object_travels_with_what_it_holds():
    import numpy

    nb = notebook("""
        class Holder:
            pass
        def f(x):
            return OBJ
    """)
    obj = nb["Holder"]()
    obj.value = numpy.float64(2.0)
    obj.me = obj                                      # a cycle through the object ends
    nb["OBJ"] = obj
    assert needs(nb["f"]) == {"numpy": ("f: OBJ", "numpy")}


def test_an_object_is_read_through_its_class_and_its_bases():
    nb = notebook("""
        class Base:
            __slots__ = ()
            def load(self):
                import yaml
        class Child(Base):
            __slots__ = ("x",)                         # no __dict__: nothing held to read
            def run(self):
                import six
        def f(x):
            return OBJ
    """)
    nb["OBJ"] = nb["Child"]()
    assert needs(nb["f"]) == {"six": ("f: OBJ -> Child -> Child.run: import six", "six"),
                              "yaml": ("f: OBJ -> Child -> Base -> Base.load: import yaml",
                                       "pyyaml")}


def test_big_containers_and_objects_are_read_by_their_first_hundred_items():
    import numpy

    nb = notebook("""
        class Wide:
            pass
        def f(x):
            return SMALL
        def g(x):
            return LARGE
        def h(x):
            return WIDE
    """)
    nb["SMALL"] = [0] * 99 + [numpy.float64(1)]         # 100 items: each is read
    nb["LARGE"] = [0] * 100 + [numpy.float64(1)]        # 101: big data, its type is enough
    wide = nb["Wide"]()
    for i in range(100):
        setattr(wide, f"a{i:03}", i)
    wide.z_last = numpy.float64(1)                      # the 101st attribute is not read
    nb["WIDE"] = wide
    assert dists(nb["f"]) == {"numpy"}
    assert dists(nb["g"]) == set() and dists(nb["h"]) == set()
    del wide.a099
    assert dists(nb["h"]) == {"numpy"}


def test_user_code_in_mp_main_counts_as_the_notebooks():
    nb = notebook("import yaml\ndef f(x):\n    return yaml\n", name="__mp_main__")
    assert dists(nb["f"]) == {"pyyaml"}


# ------------------------------------------------------------------ modules next to the notebook
def test_a_local_module_and_a_local_package_are_read_for_their_imports(tmp_path, monkeypatch):
    (tmp_path / "helpers_q.py").write_text(
        "import yaml\nimport pkg_q\ntry:\n    import absent_opt_q\nexcept ImportError:\n"
        "    absent_opt_q = None\n")
    package = tmp_path / "pkg_q"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("import six\n")
    (package / "sub" / "deep.py").write_text("from bs4 import BeautifulSoup\n")
    (package / "notes.txt").write_text("import not_python\n")
    (package / "broken.py").write_bytes(b"import \xff\xfe\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    nb = notebook("import helpers_q\ndef f(x):\n    return helpers_q\n")
    local = needs(nb["f"], local_dir=str(tmp_path))
    assert local == {"yaml": ("f: helpers_q -> helpers_q: import yaml", "pyyaml"),
                     "six": ("f: helpers_q -> helpers_q -> pkg_q: import six", "six"),
                     "bs4.BeautifulSoup": ("f: helpers_q -> helpers_q -> pkg_q: "
                                           "import bs4.BeautifulSoup", "beautifulsoup4")}
    # Without the notebook's folder the module is just a module nobody installs.
    assert needs(nb["f"]) == {"helpers_q": ("f: helpers_q", None)}
    # A library module beside a local one is still a library module.
    lib = notebook("import yaml\ndef f(x):\n    return yaml\n")
    assert needs(lib["f"], local_dir=str(tmp_path)) == {"yaml": ("f: yaml", "pyyaml")}
    # check_function reads the same folder.
    with pytest.raises(InputProblem, match=r"^f needs module 'bs4' \(via f: helpers_q -> "):
        check_function(nb["f"], entry(["pyyaml"]), local_dir=str(tmp_path))


def test_functions_and_classes_of_a_local_module_are_followed(tmp_path, monkeypatch):
    (tmp_path / "tools_q.py").write_text(
        "import six\n"
        "def helper(x):\n    import yaml\n    return x\n"
        "class Model:\n    def fit(self):\n        import tblib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "tools_q", raising=False)
    nb = notebook("from tools_q import Model\ndef f(x):\n    return Model\n")
    assert needs(nb["f"], local_dir=str(tmp_path)) == {
        "six": ("f: Model -> tools_q: import six", "six"),
        "yaml": ("f: Model -> tools_q: import yaml", "pyyaml"),
        "tblib": ("f: Model -> tools_q: import tblib", "tblib")}


def test_a_function_of_a_local_package_submodule_needs_the_packages_imports(tmp_path,
                                                                            monkeypatch):
    import sys

    package = tmp_path / "lib_q"
    package.mkdir()
    (package / "__init__.py").write_text("import six\n")
    (package / "models.py").write_text("import yaml\nfrom lib_q import more\n"
                                       "def fit(x):\n    return x\n")
    (package / "more.py").write_text("from lib_q import models\nimport tblib\n")
    (tmp_path / "ring_a_q.py").write_text("import ring_b_q\nimport pika\n")
    (tmp_path / "ring_b_q.py").write_text("import ring_a_q\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("lib_q", "lib_q.models", "lib_q.more", "ring_a_q", "ring_b_q"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    nb = notebook("from lib_q.models import fit\nimport ring_a_q\n"
                  "def f(x):\n    return fit(x)\ndef g(x):\n    return ring_a_q\n")
    assert needs(nb["f"], local_dir=str(tmp_path)) == {
        "six": ("f: fit -> lib_q: import six", "six"),
        "yaml": ("f: fit -> lib_q: import yaml", "pyyaml"),
        "tblib": ("f: fit -> lib_q: import tblib", "tblib")}
    # Local modules importing each other are read once each.
    assert dists(nb["g"], local_dir=str(tmp_path)) == {"pika"}


# ------------------------------------------------------------------ what a runtime has
def test_a_declared_package_brings_its_dependencies_with_their_extras():
    have, said = runtime_distributions(entry(["requests[socks]"]), backend="localhost")
    assert said == "runtime 'rt'"
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer"} <= have
    assert "pysocks" in have                   # what the declared extra installs
    plain, _ = runtime_distributions(entry(["requests"]), backend="localhost")
    assert "pysocks" not in plain


def test_a_runtime_without_a_name_is_named_by_a_question_mark():
    class Bare:
        requirements = ("six",)

    have, said = runtime_distributions(Bare(), backend="localhost")
    assert said == "runtime '?'" and "six" in have


def test_refusal_names_function_module_via_distribution_runtime_and_fix():
    nb = notebook("import yaml\ndef load(x):\n    return yaml.safe_load(x)\n")
    with pytest.raises(InputProblem) as err:
        check_function(nb["load"], entry(["six"], name="small_rt"))
    assert str(err.value) == ("load needs module 'yaml' (via load: yaml) from distribution "
                              "pyyaml, which runtime 'small_rt' does not install; add pyyaml "
                              "to %%fc_runtime small_rt")
    with pytest.raises(InputProblem) as err:
        check_function(nb["load"], entry(["six"]), func_label="cell 3 lambda")
    assert str(err.value).startswith("cell 3 lambda needs module 'yaml'")


def test_a_passing_check_returns_the_needs_it_checked():
    nb = notebook("import yaml\ndef load(x):\n    return yaml.safe_load(x)\n")
    checked = check_function(nb["load"], entry(["pyyaml"]))
    assert [(n.module, n.distribution) for n in checked] == [("yaml", "pyyaml")]
    assert check_function(nb["load"], None, backend="localhost") == []
    assert check_function(nb["load"]) == []      # by default: localhost, this kernel's Python


def test_a_callable_without_a_name_is_labelled_FUNC():
    nb = notebook("import yaml\nclass C:\n    def __call__(self, x):\n        return yaml\n")
    instance = nb["C"]()
    with pytest.raises(InputProblem) as err:
        check_function(instance, entry([]))
    assert str(err.value).startswith("FUNC needs module 'yaml' (via C -> ")
    assert "C.__call__: yaml) from distribution pyyaml" in str(err.value)


def test_partial_of_a_notebook_function_with_library_arguments():
    nb = notebook("def score(x, model):\n    return x\n")
    import six

    part = functools.partial(nb["score"], model=six)
    with pytest.raises(InputProblem) as err:
        check_function(part, entry([]))
    assert "needs module 'six'" in str(err.value)


def test_dependencies_follow_the_runtimes_python_and_platform(monkeypatch):
    import fc_magic.requirements as requirements

    # ipython needs typing_extensions before 3.12, colorama on Windows only.
    old, _ = runtime_distributions(entry(["ipython"], python="3.10"), backend="localhost")
    new, _ = runtime_distributions(entry(["ipython"], python="3.12"), backend="localhost")
    assert "typing-extensions" in old and "typing-extensions" not in new
    host = dict(requirements.default_environment(), sys_platform="win32",
                platform_system="Windows", os_name="nt", platform_machine="AMD64")
    monkeypatch.setattr(requirements, "default_environment", lambda: dict(host))
    on_windows, _ = runtime_distributions(entry(["ipython"]), backend="localhost")
    on_fc, _ = runtime_distributions(entry(["ipython"], target="fc"), backend="aliyun_fc")
    assert "colorama" in on_windows     # a local runtime runs on this (here: faked) host
    assert "colorama" not in on_fc      # FC runs Linux x86_64 whatever the host
    default_fc, _ = runtime_distributions(None, backend="aliyun_fc")
    assert "colorama" not in default_fc


def test_a_python_fc_has_no_builtins_for_gets_none_and_bad_lines_are_skipped(monkeypatch):
    import fc_magic.limits as limits

    have, _ = runtime_distributions(entry(["not a line !!", "six"], target="fc", python="3.99"),
                                    backend="aliyun_fc")
    assert "six" in have and "oss2" not in have
    monkeypatch.setattr(limits, "python_version", lambda: "3.99")
    default, _ = runtime_distributions(None, backend="aliyun_fc")
    assert "cloudpickle" in default and "oss2" not in default


def test_a_class_built_inside_the_function_reads_globals_in_its_body():
    nb = notebook("""
        import yaml
        def f(x):
            class Config:
                loader = yaml.SafeLoader
            return Config
    """)
    assert dists(nb["f"]) == {"pyyaml"}


def test_lithops_and_its_submodules_are_always_there():
    nb = notebook("import lithops.utils\ndef f(x):\n    import lithops.storage\n"
                  "    return lithops.utils\n")
    assert needs(nb["f"]) == {}
    check_function(nb["f"], entry([]))


def test_library_functions_stay_library_code_beside_local_modules(tmp_path):
    import yaml

    (tmp_path / "aaa_local_q.py").write_text("x = 1\n")
    assert needs(yaml.safe_load, local_dir=str(tmp_path)) == {"yaml": ("safe_load", "pyyaml")}
    nb = notebook("def f(x):\n    import aaa_local_q\n    import yaml\n    return x\n")
    # A module beside the notebook is shipped by Lithops: not a need; the rest still are.
    assert needs(nb["f"], local_dir=str(tmp_path)) == {"yaml": ("f: import yaml", "pyyaml")}


def test_what_a_callable_object_holds_is_read():
    import numpy

    nb = notebook("""
        class Scorer:
            def __call__(self, x):
                return x
    """)
    scorer = nb["Scorer"]()
    scorer.weights = numpy.float64(1.0)
    assert needs(scorer) == {"numpy": ("Scorer", "numpy")}


def test_an_empty_closure_cell_does_not_hide_the_next_one():
    nb = notebook("""
        import yaml
        def outer():
            z_mod = yaml
            def inner(x):
                return a_unset, z_mod
            yield inner
            a_unset = 1
        f = next(outer())
    """)
    assert dists(nb["f"]) == {"pyyaml"}


def test_names_not_defined_yet_are_logged_at_debug_and_builtins_are_not():
    nb = notebook("def f(x):\n    return defined_later(x), len(x)\n")
    with caplog_at_debug() as logged:
        function_needs(nb["f"])
    assert [r.getMessage() for r in logged.records] == ["f uses defined_later, not defined yet"]


def test_a_runtime_without_a_python_is_the_kernels(monkeypatch):
    import fc_magic.limits as limits

    class Bare:
        requirements = ("pytest",)

    monkeypatch.setattr(limits, "python_version", lambda: "3.10")
    have, _ = runtime_distributions(Bare(), backend="localhost")
    assert "tomli" in have            # pytest needs tomli before 3.11


def test_a_local_module_imported_inside_the_function_is_read_for_its_imports(tmp_path,
                                                                             monkeypatch):
    import sys

    (tmp_path / "inner_q.py").write_text("import yaml\nfrom bs4 import BeautifulSoup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "inner_q", raising=False)
    nb = notebook("def f(x):\n    import inner_q\n    return inner_q\n"
                  "def g(x):\n    from inner_q import BeautifulSoup\n    return x\n")
    expected = {"yaml": ("f -> inner_q: import yaml", "pyyaml"),
                "bs4.BeautifulSoup": ("f -> inner_q: import bs4.BeautifulSoup",
                                      "beautifulsoup4")}
    assert needs(nb["f"], local_dir=str(tmp_path)) == expected
    assert dists(nb["g"], local_dir=str(tmp_path)) == {"pyyaml", "beautifulsoup4"}
    with pytest.raises(InputProblem, match=r"^f needs module 'bs4' \(via f -> inner_q: "):
        check_function(nb["f"], entry(["pyyaml"]), local_dir=str(tmp_path))


def test_what_a_library_object_holds_is_read():
    import types

    import numpy

    settings = types.SimpleNamespace(scale=numpy.float64(2.0), nested=types.SimpleNamespace(
        loader=__import__("yaml").SafeLoader))
    nb = notebook("def f(x):\n    return x * SETTINGS.scale\n")
    nb["SETTINGS"] = settings
    assert needs(nb["f"]) == {"numpy": ("f: SETTINGS", "numpy"),
                              "yaml.loader": ("f: SETTINGS", "pyyaml")}
    # An object that holds itself is read once.
    settings.me = settings
    assert dists(nb["f"]) == {"numpy", "pyyaml"}


def test_a_callable_with_only_a_name_attribute_is_labelled_by_it():
    nb = notebook("""
        import six
        class Scorer:
            def __call__(self, x):
                return six
    """)
    scorer = nb["Scorer"]()
    scorer.__name__ = "scorer"     # no __qualname__ on an instance
    assert needs(scorer) == {"six": ("scorer -> Scorer -> Scorer.__call__: six", "six")}
    with pytest.raises(InputProblem, match=r"^scorer needs module 'six' \(via scorer -> Scorer"):
        check_function(scorer, entry([]))


def test_the_default_fc_runtime_follows_fc_markers_on_another_host(monkeypatch):
    import fc_magic.requirements as requirements

    # cryptography needs cffi on CPython only; FC runs CPython whatever runs the kernel.
    host = dict(requirements.default_environment(), implementation_name="pypy",
                platform_python_implementation="PyPy")
    monkeypatch.setattr(requirements, "default_environment", lambda: dict(host))
    default_fc, said = runtime_distributions(None, backend="aliyun_fc")
    assert said == "the default Function Compute runtime"
    assert {"cryptography", "cffi"} <= default_fc
    local, _ = runtime_distributions(entry(["cryptography"]), backend="localhost")
    assert "cryptography" in local and "cffi" not in local   # a local runtime runs on the host


def test_via_names_a_bound_notebook_method_and_a_library_class_alone():
    import numpy

    nb = notebook("""
        from yaml import YAMLObject
        class Scorer:
            def score(self, x):
                return x
        def f(x):
            return BOUND(x)
        def uses_class(x):
            return YAMLObject
    """)
    scorer = nb["Scorer"]()
    scorer.weights = numpy.float64(1.0)
    nb["BOUND"] = scorer.score
    assert needs(nb["f"]) == {"numpy": ("f: BOUND", "numpy")}
    assert needs(nb["uses_class"]) == {"yaml": ("uses_class: YAMLObject", "pyyaml")}


def test_a_compiled_module_of_a_local_package_is_not_a_need(tmp_path):
    import six

    (tmp_path / "cext_q").mkdir()
    (tmp_path / "cext_q" / "__init__.py").write_text("")
    fast = [].append                      # stands for a C function of cext_q/_fast.so
    fast.__module__ = "cext_q._fast"
    nb = notebook("def f(x):\n    return FAST(x), SIX\n")
    nb.update(FAST=fast, SIX=six)
    assert needs(nb["f"], local_dir=str(tmp_path)) == {"six": ("f: SIX", "six")}
    assert needs(nb["f"])["cext_q._fast"] == ("f: FAST", None)


def test_a_library_object_counts_only_what_its_pickle_ships(monkeypatch):
    import logging
    import types

    # A logger pickles as its name: the handler writing to a kernel-only stream stays behind.
    kernel_only = types.ModuleType("kernel_only_stream")
    exec("class Stream:\n    def write(self, text):\n        return len(text)\n",
         kernel_only.__dict__)
    monkeypatch.setitem(__import__("sys").modules, "kernel_only_stream", kernel_only)
    log = logging.getLogger("fc_magic_test.preflight_units")
    handler = logging.StreamHandler(kernel_only.Stream())
    log.addHandler(handler)
    try:
        nb = notebook("def f(x):\n    LOG.info('x=%s', x)\n    return x\n")
        nb["LOG"] = log
        assert "kernel_only_stream" not in needs(nb["f"])
        # The same stream in a SimpleNamespace is pickled with it, so it counts.
        nb["LOG"] = types.SimpleNamespace(stream=handler.stream)
        assert "kernel_only_stream" in needs(nb["f"])
    finally:
        log.removeHandler(handler)


def test_a_library_objects_reduce_decides_what_counts(monkeypatch, caplog):
    import sys
    import types

    lib = types.ModuleType("fake_lib_reduce")
    exec("class Engine:\n    pass\n"
         "class ByArgs:\n"
         "    def __init__(self, engine):\n        self.engine = engine\n"
         "    def __reduce__(self):\n        return (ByArgs, (self.engine,))\n"
         "class ByName:\n"
         "    def __init__(self):\n        self.engine = Engine()\n"
         "    def __reduce__(self):\n        return 'SINGLETON'\n"
         "class Unpicklable:\n"
         "    def __init__(self):\n        self.engine = Engine()\n"
         "    def __reduce_ex__(self, protocol):\n        raise TypeError('holds a socket')\n",
         lib.__dict__)
    other = types.ModuleType("fake_engine_lib")
    exec("class Part:\n    pass\n", other.__dict__)
    for module in (lib, other):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    nb = notebook("def f(x):\n    return HELD\n")
    # What travels in the reduce's arguments counts...
    nb["HELD"] = lib.ByArgs(other.Part())
    assert set(needs(nb["f"])) == {"fake_lib_reduce", "fake_engine_lib"}
    # ... an object pickled by name ships nothing it holds ...
    nb["HELD"] = lib.ByName()
    nb["HELD"].engine = other.Part()
    assert set(needs(nb["f"])) == {"fake_lib_reduce"}
    # ... and one that cannot be pickled is left to cloudpickle's own error, said at debug.
    nb["HELD"] = lib.Unpicklable()
    nb["HELD"].engine = other.Part()
    with caplog.at_level("DEBUG", logger="fc_magic.preflight"):
        assert set(needs(nb["f"])) == {"fake_lib_reduce"}
    assert "pre-flight does not follow a Unpicklable: holds a socket" in caplog.messages


def test_a_library_object_that_holds_itself_is_read_once(monkeypatch):
    import sys
    import types

    lib = types.ModuleType("fake_lib_counted")
    exec("class Counted:\n"
         "    reads = 0\n"
         "    def __reduce_ex__(self, protocol):\n"
         "        Counted.reads += 1\n"
         "        return (Counted, (), self.__dict__)\n", lib.__dict__)
    monkeypatch.setitem(sys.modules, lib.__name__, lib)
    held = lib.Counted()
    held.me, held.twin = held, [held, held]
    nb = notebook("def f(x):\n    return HELD, AGAIN\n")
    nb["HELD"], nb["AGAIN"] = held, held
    assert set(needs(nb["f"])) == {"fake_lib_counted"}
    assert lib.Counted.reads == 1
