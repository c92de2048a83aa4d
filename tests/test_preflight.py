"""Pre-flight: what a function needs on a worker, checked against its runtime."""
from __future__ import annotations

import sys
import textwrap

import pytest

from fc_magic.inputs import InputProblem
from fc_magic.preflight import check_function, function_needs, runtime_distributions
from fc_magic.runtime import RuntimeEntry

NOTEBOOK = '''
import os, json
import numpy as np
import yaml as config_reader
from sklearn.linear_model import LinearRegression
from collections import OrderedDict

SCALE = np.float64(2.0)
MODEL = LinearRegression()

def helper(path):
    return config_reader.safe_load(path)

class Parser:
    def parse(self, text):
        from bs4 import BeautifulSoup
        return BeautifulSoup(text, "html.parser")

def uses_helper(x):
    return helper(x)

def uses_class(x):
    return Parser().parse(x)

def uses_body_import(x):
    import nacl.secret
    return nacl.secret

def uses_numpy_only(x):
    return np.sqrt(x) * SCALE

def uses_model(x):
    return MODEL.fit

def uses_stdlib(x):
    return json.dumps(OrderedDict(a=os.sep, b=x))

def make_closure():
    cipher_mod = __import__("Crypto.Cipher").Cipher
    def inner(x):
        return cipher_mod, x
    return inner

uses_closure = make_closure()

def relative(x):
    from . import sibling
    return sibling

class Scorer:
    def __init__(self):
        self.model = LinearRegression()
        self.loop = [1]
        self.loop.append(self.loop)          # a self-referencing list
    def score(self, x):
        return x

BOUND = Scorer().score

def uses_nested(x):
    def middle(y):
        def inner(z):
            import yaml
            return yaml.safe_load(z)
        return inner(y)
    return middle(x)

def uses_nested_global(x):
    def inner():
        return np.sqrt(x)
    return inner()

uses_lambda = lambda x: (lambda y: config_reader.safe_load(y))(x)

def uses_inner_lambda(x):
    return sorted([x], key=lambda v: np.float64(v))

def builds_a_class(x):
    class Local:
        def run(self):
            from bs4 import BeautifulSoup
            return BeautifulSoup
        @staticmethod
        def fitted():
            return LinearRegression
        @property
        def crypto(self):
            import nacl.secret
            return nacl.secret
    return Local().run()
'''


@pytest.fixture(scope="module")
def nb():
    """Functions defined as a notebook defines them: in a __main__ namespace."""
    namespace = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(NOTEBOOK), "<notebook>", "exec"), namespace)
    return namespace


def dists(func, **kw):
    return {n.distribution for n in function_needs(func, **kw)}


def entry(requirements, *, name="my_rt", target="local", sizes=(), python="3.12"):
    return RuntimeEntry(name=name, key="0" * 64, target=target, deploy_name=f"{name}-00000000",
                        path="/nonexistent", interpreter=None, package=None,
                        requirements=tuple(requirements), python=python,
                        manifest={"sizes": [[s, 1, None] for s in sizes]})


def test_needs_follow_globals_helpers_classes_closures_and_objects(nb):
    assert dists(nb["uses_helper"]) == {"pyyaml"}                 # helper -> global module alias
    assert dists(nb["uses_class"]) == {"beautifulsoup4"}          # class -> method body import
    assert dists(nb["uses_body_import"]) == {"pynacl"}
    assert dists(nb["uses_numpy_only"]) == {"numpy"}              # module global + np.float64 object
    assert dists(nb["uses_model"]) == {"scikit-learn"}            # a captured estimator instance
    assert dists(nb["uses_closure"]) == {"pycryptodome"}          # closure cell holding a module
    assert dists(nb["uses_stdlib"]) == set()
    assert dists(nb["relative"]) == set()
    # A bound method of a notebook object: the object (and its fitted model) is pickled too.
    assert dists(nb["BOUND"]) == {"scikit-learn"}


def test_imports_in_nested_functions_lambdas_and_built_classes_are_seen(nb):
    assert dists(nb["uses_nested"]) == {"pyyaml"}          # import two functions deep
    assert dists(nb["uses_nested_global"]) == {"numpy"}    # a global module used by an inner def
    assert dists(nb["uses_lambda"]) == {"pyyaml"}          # FUNC a lambda, module in a lambda in it
    assert dists(nb["uses_inner_lambda"]) == {"numpy"}     # a lambda inside FUNC
    # A class FUNC builds: imports and globals in its methods, static methods and properties.
    assert dists(nb["builds_a_class"]) == {"beautifulsoup4", "scikit-learn", "pynacl"}


def test_a_nested_import_missing_from_the_runtime_is_refused(nb):
    with pytest.raises(InputProblem) as err:
        check_function(nb["uses_nested"], entry(["cloudpickle"]), func_label="uses_nested")
    message = str(err.value)
    assert "module 'yaml'" in message and message.endswith("add pyyaml to %%fc_runtime my_rt")
    check_function(nb["uses_nested"], entry(["PyYAML"]))


def test_need_says_how_the_module_is_reached(nb):
    [need] = function_needs(nb["uses_class"])
    assert need.module == "bs4.BeautifulSoup"
    assert "uses_class" in need.via and "Parser" in need.via


def test_local_module_functions_are_followed(tmp_path, monkeypatch):
    (tmp_path / "nbhelpers_pf.py").write_text("import yaml\n\ndef load(p):\n"
                                             "    return yaml.safe_load(p)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace = {"__name__": "__main__"}
    exec("import nbhelpers_pf\ndef f(x):\n    return nbhelpers_pf.load(x)\n", namespace)
    try:
        assert dists(namespace["f"], local_dir=str(tmp_path)) == {"pyyaml"}
    finally:
        sys.modules.pop("nbhelpers_pf", None)


def test_missing_package_is_refused_with_module_distribution_and_fix(nb):
    with pytest.raises(InputProblem) as err:
        check_function(nb["uses_helper"], entry(["numpy==2.0", "cloudpickle"]),
                       func_label="uses_helper")
    message = str(err.value)
    assert "module 'yaml'" in message and "pyyaml" in message
    assert "runtime 'my_rt'" in message
    assert message.endswith("add pyyaml to %%fc_runtime my_rt")
    assert "\n" not in message


def test_runtime_with_the_package_or_its_dependent_passes(nb):
    check_function(nb["uses_helper"], entry(["PyYAML==6.0.1"]))
    # numpy is not declared, but scikit-learn depends on it.
    check_function(nb["uses_numpy_only"], entry(["scikit-learn"]))
    # What the build really installed (the manifest's package table) counts too.
    check_function(nb["uses_class"], entry(["cloudpickle"], sizes=["beautifulsoup4"]))


def test_no_runtime_on_localhost_is_the_kernel_itself(nb):
    assert check_function(nb["uses_model"], None, backend="localhost") == []


def test_no_runtime_on_fc_is_lithops_plus_fc_builtins():
    namespace = {"__name__": "__main__"}
    exec("import requests, six, urllib3, oss2\nimport yaml\n"
         "def fine(x):\n    return requests, six, urllib3, oss2\n"
         "def needs_yaml(x):\n    return yaml\n", namespace)
    check_function(namespace["fine"], None, backend="aliyun_fc")
    with pytest.raises(InputProblem) as err:
        check_function(namespace["needs_yaml"], None, backend="aliyun_fc")
    assert "the default Function Compute runtime" in str(err.value)
    assert "declare a runtime with %%fc_runtime NAME and add pyyaml" in str(err.value)


def test_fc_runtime_counts_fc_builtins():
    namespace = {"__name__": "__main__"}
    exec("import requests\ndef f(x):\n    return requests.get\n", namespace)
    with pytest.raises(InputProblem):
        check_function(namespace["f"], entry(["six"], target="local"))
    check_function(namespace["f"], entry(["six"], target="fc"))


# ------------------------------------------------------------------ through the shell
def test_fc_runtime_capture_table_conflict_then_preflight_in_fc_map(ip, fc, tmp_path):
    """One real local runtime: --capture, the table, the conflict note, then %fc_map
    refusing a function whose package the runtime lacks, and running one it has."""
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output
    import importlib.metadata as md

    assert ip.find_cell_magic("fc_runtime") is not None
    ip.history_manager.reset()      # capture only what this test's cells import

    def run(source):
        return ip.run_cell(source, store_history=True)

    assert run("import yaml\nimport six\n").success
    with capture_output() as shown:
        built = run("%%fc_runtime pf_rt --capture\nsix<1.17   # an older six on purpose\n")
    assert built.success, built.error_in_exec
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert ["pyyaml", f"=={md.version('PyYAML')}", "captured"] in rows
    assert ["six", "<1.17", "declared"] in rows
    assert ["cloudpickle", f"=={md.version('cloudpickle')}", "lithops"] in rows
    assert any(line.startswith("note: six: line 1 asks for <1.17") and md.version("six") in line
               for line in shown.stdout.splitlines())
    assert fc.current_runtime.name == "pf_rt"
    assert f"pyyaml=={md.version('PyYAML')}" in fc.current_runtime.requirements

    marker = tmp_path / "invoked"
    ip.user_ns["MARKER"] = str(marker)
    assert run("def needs_bs4(x):\n    open(MARKER, 'a').write('called')\n"
               "    from bs4 import BeautifulSoup\n    return BeautifulSoup\n").success
    refused = run("%fc_map needs_bs4 [1, 2]")
    assert type(refused.error_in_exec) is UsageError
    message = str(refused.error_in_exec)
    assert message.startswith("%fc_map: needs_bs4 needs module 'bs4'")
    assert "beautifulsoup4" in message and "runtime 'pf_rt'" in message
    assert message.endswith("add beautifulsoup4 to %%fc_runtime pf_rt")
    assert not marker.exists()      # refused before any task was invoked

    assert run("def loads(x):\n    import yaml\n    return yaml.safe_load(str(x))\n").success
    done = run("%fc_map loads [1, 2] --quiet")
    assert done.success, done.error_in_exec
    assert done.result.values == [1, 2]


def test_what_a_runtime_has_depends_on_its_target_python_and_manifest():
    from fc_magic.requirements import FC_BUILTIN_DISTRIBUTIONS, lithops_worker_requirements

    local, said = runtime_distributions(entry(["scikit-learn==1.5", "not a line !!"]),
                                        backend="localhost")
    assert said == "runtime 'my_rt'"
    assert {"scikit-learn", "numpy", "scipy", "joblib"} <= local     # with its dependencies
    assert "oss2" not in local and "tablestore" not in local        # no FC builtins locally
    fc312, _ = runtime_distributions(entry(["humanize"], target="fc"), backend="aliyun_fc")
    assert {"humanize", "oss2", "alibabacloud-sts20150401"} <= fc312
    assert "tablestore" not in fc312                                 # 3.10's, not 3.12's
    fc310, _ = runtime_distributions(entry(["humanize"], target="fc", python="3.10"),
                                     backend="aliyun_fc")
    assert set(FC_BUILTIN_DISTRIBUTIONS["3.10"]) <= fc310 and "tablestore" in fc310
    sized, _ = runtime_distributions(entry([], sizes=["Foo_Bar", ""]), backend="localhost")
    assert "foo-bar" in sized                                        # what the build installed
    assert runtime_distributions(None, backend="localhost") == (None, "this kernel's Python")
    default, said = runtime_distributions(None, backend="aliyun_fc")
    assert said == "the default Function Compute runtime"
    assert set(lithops_worker_requirements("aliyun_fc")) <= default
    assert "oss2" in default and "humanize" not in default
