"""float64 is explicit: importing the packages changes no JAX setting, building a System without float64
raises a clear error, and ``ai2dft.enable_float64()`` switches it on.

Runs in a fresh interpreter: this test process has float64 on (tests/conftest.py).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    import ai2dft, elct_jax.cli.main, elct_jax.cli.demo, elct_jax.train.run, elct_jax.analysis.evaluate, elct_jax.data.systems
    from pyscf.pbc import gto as pbc_gto

    out = {"x64_after_import": bool(jax.config.jax_enable_x64)}

    def error_of(build):
        try:
            build()
        except RuntimeError as err:
            return str(err)
        return None

    h2 = (["H", "H"], np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.74]]))
    out["molecule_error"] = error_of(lambda: ai2dft.System.from_symbols(*h2, "sto-3g", "lda,vwn"))
    cell = pbc_gto.M(a=np.eye(3) * 3.0, atom="He 0 0 0", basis="gth-szv", pseudo="gth-pade", verbose=0)
    out["crystal_error"] = error_of(lambda: ai2dft.System.from_pyscf(cell, xc="lda,vwn"))
    ai2dft.enable_float64()
    out["x64_after_enable"] = bool(jax.config.jax_enable_x64)
    system = ai2dft.System.from_symbols(*h2, "sto-3g", "lda,vwn")
    out["overlap_dtype"] = str(system.overlap.dtype)
    print("RESULT", json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def fresh_process() -> dict:
    """What a fresh interpreter sees before and after ``ai2dft.enable_float64()``."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}  # that variable would switch it on
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_importing_the_packages_leaves_float64_off(fresh_process):
    assert fresh_process["x64_after_import"] is False


@pytest.mark.parametrize("kind", ["molecule", "crystal"])
def test_building_a_system_without_float64_names_the_fix(fresh_process, kind):
    message = fresh_process[f"{kind}_error"]
    assert message is not None, f"a {kind} System was built with float64 off"
    assert "ai2dft.enable_float64()" in message and "jax_enable_x64" in message


def test_enable_float64_switches_it_on(fresh_process):
    assert fresh_process["x64_after_enable"] is True
    assert fresh_process["overlap_dtype"] == "float64"
