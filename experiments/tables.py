"""Text tables shared by the experiments: a training history printed one evaluation per row."""
from __future__ import annotations


def step_table(history: dict, columns) -> str:
    """Rows of ``history["step"]`` and the given columns, a header line first.

    history: arrays of equal length, one entry per evaluation (Hartree, as recorded);
    columns: (header, key, scale, format spec such as "14.8f") per column after the step.
    """
    width = lambda spec, header: max(int(spec.split(".")[0]), len(header))  # noqa: E731
    lines = [f"{'step':>6}" + "".join(f" {header:>{width(spec, header)}}" for header, _, _, spec in columns)]
    for i in range(len(history["step"])):
        lines.append(f"{int(history['step'][i]):6d}" + "".join(
            f" {history[key][i] * scale:{width(spec, header)}.{spec.split('.')[1]}}"
            for header, key, scale, spec in columns))
    return "\n".join(lines)
