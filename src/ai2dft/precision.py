"""Floating-point precision of the Kohn-Sham layer: float64 is switched on explicitly, never by an import.

The DFT layer is a physics code whose parity with PySCF (1e-8 Ha) needs double precision, which JAX
gives only with its process-wide ``jax_enable_x64`` flag. Importing ``ai2dft`` or ``elct_jax`` leaves
that flag as the user set it; a script that builds a ``System`` calls :func:`enable_float64` first
(the ``elct`` command and the test suite do). Networks may still run in float32 by choosing float32
parameters; their output Hamiltonians are cast to the System's dtype.

    import ai2dft
    ai2dft.enable_float64()   # before creating any JAX array the DFT layer will see
"""
import jax

FLOAT64_OFF_MESSAGE = ("ai2dft needs float64: call ai2dft.enable_float64() before building a System "
                       "(JAX's jax_enable_x64 is off)")


def enable_float64() -> None:
    """Switch on JAX's float64 mode (``jax_enable_x64``) for this process.

    Process-wide and idempotent. Arrays created before the call keep their (float32) dtype, so call it
    at the start of a script, before building Systems or loading data.
    """
    jax.config.update("jax_enable_x64", True)


def float64_enabled() -> bool:
    """Whether JAX's float64 mode is on in this process."""
    return bool(jax.config.jax_enable_x64)


def require_float64() -> None:
    """Raise ``RuntimeError`` (:data:`FLOAT64_OFF_MESSAGE`) unless JAX's float64 mode is on."""
    if not float64_enabled():
        raise RuntimeError(FLOAT64_OFF_MESSAGE)
