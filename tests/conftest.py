"""Physics tests run in float64, switched on the documented way.

Each test module's compiled functions are dropped when it ends (``jax.clear_caches``): the whole suite in one
process otherwise accumulates thousands of XLA executables, each holding its own memory maps, and crossed the
kernel's 65,530 maps per process (vm.max_map_count), where XLA's compiler crashed (SIGSEGV/SIGABRT) in the
first step compiled by tests/test_train.py, always at the same point of the suite."""
import jax
import pytest

import ai2dft

ai2dft.enable_float64()


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_functions_after_each_module():
    yield
    jax.clear_caches()
