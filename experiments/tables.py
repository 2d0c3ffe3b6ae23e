"""Text tables shared by the experiments: a training history one evaluation per row, and the final numbers
of every mode one mode per row."""
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


def final_table(histories: dict, columns, footnote: str) -> str:
    """One row per mode of ``histories`` (mode -> history dict as for ``step_table``), a header and a rule
    first and ``footnote`` last.

    columns: (header, value, scale, format spec) per column after the mode; value is a history key (its
    last entry is printed) or a function of the history returning a number.
    """
    width = lambda spec, header: max(int(spec.split(".")[0]), len(header))  # noqa: E731
    pick = lambda h, value: value(h) if callable(value) else h[value][-1]  # noqa: E731
    head = f"{'mode':<14}" + "".join(f" {header:>{width(spec, header)}}" for header, _, _, spec in columns)
    lines = [head, "-" * len(head)]
    for mode, h in histories.items():
        lines.append(f"{mode:<14}" + "".join(f" {pick(h, value) * scale:{width(spec, header)}.{spec.split('.')[1]}}"
                                             for header, value, scale, spec in columns))
    return "\n".join(lines + [footnote])
