"""Physics tests run in float64, switched on the documented way."""
import ai2dft

ai2dft.enable_float64()
